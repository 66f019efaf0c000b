"""``pni eval``: accuracy under attack of a checkpoint (the paper's or the honest protocol), or of
any model (``--model``) and a versioned benchmark card (``--benchmark``, ``cli.benchmark``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..attacks.threat import threat_eps
from ..runs import EVAL_FOLDER
from .args import (add_eval_arguments, attack_options_from_args, eval_settings_from_args, resumable,
                   writable_folder)
from .benchmark import add_model_arguments


def add_eval_parser(sub: Any) -> None:
    ev = sub.add_parser("eval", help="accuracy under attacks over trials, noise on and off",
                        description="Evaluate a checkpoint: clean and attacked accuracy, mean ± std "
                                    "over trials, with and without the noise (Table 2 layout).")
    add_eval_arguments(ev)
    add_model_arguments(ev)
    ev.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..evaluation.evaluator import evaluate_checkpoint
    from ..reports.evaluation import write_evaluation

    from ..attacks.registry import DEFAULT_VOTES
    from ..evaluation.protocols import EVAL_ATTACKS, HONEST
    from .benchmark import cmd_eval_model, need_checkpoint

    if args.model or args.benchmark:  # any model, or a versioned protocol's card (pni.benchmark)
        return cmd_eval_model(args)
    need_checkpoint(args)
    paper = args.protocol == "paper"
    votes = args.votes if args.votes is not None else (1 if paper else DEFAULT_VOTES)
    options = attack_options_from_args(args)
    out = writable_folder(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / EVAL_FOLDER)
    settings = eval_settings_from_args(
        args, attacks=tuple(args.attacks or EVAL_ATTACKS[args.protocol]), n=args.n, noise=args.noise == "both",
        votes=votes, worst_case=not paper, attack_options=options,
        cascade=() if paper or args.attacks else HONEST.cascade,   # AutoAttack's way: the robust images only
        **({"eps": threat_eps(args.threat, args.eps)} if args.threat else {}))
    device = distributed.init(settings.device)  # under torchrun: sharded, gathered on rank 0
    sharded = distributed.is_initialized()
    with resumable(out, "pni eval", enabled=not sharded) as partial:  # a stopped run resumes
        evaluation, label = evaluate_checkpoint(args.checkpoint, settings, device=str(device),
                                                progress=distributed.is_main(), distributed=sharded,
                                                resume_file=partial)
        if not distributed.is_main():
            return 0
        paths = write_evaluation(evaluation, out, label)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0
