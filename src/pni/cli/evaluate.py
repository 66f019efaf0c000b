"""``pni eval``: accuracy under attack of a checkpoint (the paper's or the honest protocol), or of
any model (``--model``) and a versioned benchmark card (``--benchmark``, ``cli.benchmark``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..attacks.threat import threat_eps
from ..runs import EVAL_FOLDER, PARTIAL_EVALUATION
from .args import add_eval_arguments, attack_options_from_args, eval_settings_from_args, writable_folder
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
    partial = out / PARTIAL_EVALUATION  # each finished attack: a stopped run resumes from it
    if not sharded and partial.exists():
        print(f"resuming: the attacks finished before a stop are reused from {partial} "
              f"(when the settings are the same)", file=sys.stderr)
    try:
        evaluation, label = evaluate_checkpoint(args.checkpoint, settings, device=str(device),
                                                progress=distributed.is_main(), distributed=sharded,
                                                resume_file=None if sharded else str(partial))
    except KeyboardInterrupt:
        if partial.exists():
            print(f"pni eval: the attacks finished so far are kept in {partial}: the same command resumes",
                  file=sys.stderr)
        raise
    if not distributed.is_main():
        return 0
    paths = write_evaluation(evaluation, out, label)
    partial.unlink(missing_ok=True)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0
