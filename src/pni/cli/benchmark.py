"""``pni eval --model PKG.MODULE:FACTORY`` (any model), ``pni eval --benchmark
pni-honest-v1`` (a card), ``pni audit --model`` and ``pni leaderboard``: parse, call the
library (``pni.evaluation.user_model``, ``pni.benchmark``), write the files."""
from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from ..runs import CARD
from .args import UsageError, resumable, writable_folder


def add_model_arguments(parser: argparse.ArgumentParser, benchmark: bool = True) -> None:
    """``--model``, ``--weights``, ``--threat``, ``--name`` (and ``--benchmark``, ``--budget``)."""
    from ..benchmark.protocol import BUDGETS, PROTOCOLS

    group = parser.add_argument_group("any model (instead of a pni checkpoint)")
    group.add_argument("--model", default=None, metavar="PKG.MODULE:FACTORY",
                       help="your model: FACTORY() returns the nn.Module (images in [0, 1]); also "
                            "path/to/file.py:FACTORY; needs --dataset and --threat")
    group.add_argument("--weights", default=None, metavar="FILE",
                       help="a state dict loaded into it (torch.load weights_only=True)")
    group.add_argument("--threat", default=None, metavar="NORM:EPS",
                       help="the threat model, e.g. linf:8/255 (required with --model; a checkpoint's "
                            "default: its training eps)")
    group.add_argument("--name", default=None, help="the model's name in reports and on its card")
    if benchmark:
        group.add_argument("--benchmark", default=None, choices=tuple(PROTOCOLS),
                           help="run a versioned honest protocol and write its card (card.json)")
        group.add_argument("--budget", default="full", choices=tuple(BUDGETS),
                           help="--benchmark budget: full (the protocol), cpu or smoke (reduced, written "
                                "on the card); default full")


def open_user_model(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """The ``--model`` and its data (``--dataset``, ``--data-dir``, ``--split``) and name."""
    from ..data import load_dataset
    from ..evaluation.user_model import build_user_model

    if not getattr(args, "dataset", None):
        raise UsageError("--model needs --dataset (pni does not guess your model's data)")
    if not args.threat:
        raise UsageError("--model needs --threat, e.g. --threat linf:8/255 (pni does not guess a radius)")
    device = getattr(args, "device", "cpu") or "cpu"
    model = build_user_model(args.model, args.weights, device=device)
    data = load_dataset(args.dataset, getattr(args, "split", None) or "test", getattr(args, "data_dir", None))
    return model, data, args.name or args.model


def _say(text: str) -> None:
    print(text, flush=True)


def cmd_eval_model(args: argparse.Namespace) -> int:
    """``pni eval`` with ``--model`` or ``--benchmark``."""
    if args.benchmark:
        return _cmd_benchmark(args)
    if args.checkpoint is not None:
        raise UsageError("give a checkpoint or --model, not both")
    from ..attacks.registry import DEFAULT_VOTES
    from ..evaluation.protocols import EVAL_ATTACKS, HONEST
    from .args import attack_options_from_args, eval_settings_from_args
    from ..data import at_most
    from ..evaluation.evaluator import evaluate
    from ..reports.evaluation import write_evaluation
    from ..attacks.budget import paper_pgd_steps

    out = writable_folder(args.out or "pni-eval")
    model, data, label = open_user_model(args)
    data = at_most(data, args.n, 0)
    paper = args.protocol == "paper"
    votes = args.votes if args.votes is not None else (1 if paper else DEFAULT_VOTES)
    s = eval_settings_from_args(args)  # the one source of defaults, as for a checkpoint
    evaluation = evaluate(model, data, tuple(args.attacks or EVAL_ATTACKS[args.protocol]), s.trials,
                          args.noise == "both", threat=args.threat, eps=s.eps,
                          steps=s.steps if s.steps is not None else paper_pgd_steps(data.image_shape),
                          step_size=s.step_size, seed=s.seed, batch_size=s.batch_size, device=s.device,
                          votes=votes, worst_case=not paper, attack_options=attack_options_from_args(args),
                          cascade=() if paper or args.attacks else HONEST.cascade)
    paths = write_evaluation(evaluation, out, label)
    print(paths["markdown"].read_text())
    print(f"randomized: {'yes' if evaluation.randomized else 'no (one draw, one vote)'}"
          + ("; 'Test without PNI': the model as it is, its own randomness untouched"
             if evaluation.randomized and "with_noise" not in evaluation.accuracies else ""))
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from ..benchmark import benchmark, benchmark_checkpoint, leaderboard_markdown, write_card
    from ..files import file_sha256
    from ..files import write_text

    if (args.checkpoint is None) == (args.model is None):
        raise UsageError("--benchmark judges a checkpoint or a --model: give one of them")
    fixed = [flag for flag, dest in (("--attacks", "attacks"), ("--votes", "votes"), ("--trials", "trials"),
                                     ("--eps", "eps"), ("--steps", "steps"), ("--step-size", "step_size"))
             if getattr(args, dest, None) is not None]
    if fixed:
        raise UsageError(f"--benchmark {args.benchmark} fixes the attacks, budgets and votes: {', '.join(fixed)} "
                         f"not taken (--threat, --n and --budget are; both are written on the card)")
    device = getattr(args, "device", "cpu") or "cpu"
    if args.checkpoint is not None:
        out = writable_folder(args.out or Path(args.checkpoint).resolve().parent / "card")
        judge = functools.partial(benchmark_checkpoint, args.checkpoint, args.threat, name=args.name,
                                  dataset=getattr(args, "dataset", None), data_dir=getattr(args, "data_dir", None))
    else:
        out = writable_folder(args.out or "pni-card")
        model, data, label = open_user_model(args)
        judge = functools.partial(benchmark, model, data, args.threat, name=label, source=f"factory {args.model}",
                                  weights_sha256=file_sha256(args.weights) if args.weights else None)
    with resumable(out, "pni eval --benchmark") as partial:  # a stopped run resumes its attacks
        card = judge(protocol=args.benchmark, budget=args.budget, n=args.n, device=device, say=_say, progress=True,
                     batch_size=getattr(args, "batch_size", None), resume_file=partial)
        path = write_card(card, Path(out) / CARD)
    text = leaderboard_markdown([card], title=f"{card['model']['name']}: {card['protocol']['name']}")
    write_text(text, Path(out) / "card.md")
    print(text)
    print(f"written: {path}, {Path(out) / 'card.md'}")
    return 0


def cmd_audit_model(args: argparse.Namespace) -> int:
    """``pni audit --model``: the checklist on your model (surrogate: --surrogate not taken)."""
    from ..auditing import audit
    from .args import audit_overrides
    from ..reports.audit import write_audit
    from ..attacks.threat import threat_eps

    if args.checkpoint is not None:
        raise UsageError("give a checkpoint or --model, not both")
    out = writable_folder(args.out or "pni-audit")
    model, data, label = open_user_model(args)
    eps = threat_eps(args.threat, args.eps)
    report = audit(model, data, eps, label=label, device=args.device, progress=not args.quiet, n=args.n,
                   **audit_overrides(args))
    paths = write_audit(report, out)
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from ..benchmark import leaderboard_markdown, read_card
    from ..files import write_text

    cards = [read_card(path) for path in args.cards]
    text = leaderboard_markdown(cards, title=args.title)
    if args.out:
        write_text(text, args.out, what="leaderboard")
        print(f"written: {args.out}")
    else:
        print(text)
    return 0


def add_leaderboard_parser(sub: Any) -> None:
    board = sub.add_parser("leaderboard", help="benchmark cards side by side, sorted by honest worst case",
                           description="Read and validate benchmark cards (pni eval --benchmark) and render "
                                       "them as a Markdown leaderboard, one table per protocol, dataset and "
                                       "threat, sorted by the honest worst-case accuracy.")
    board.add_argument("cards", nargs="+", metavar="CARD", help="card.json files")
    board.add_argument("--out", default=None, help="Markdown file to write (default: print)")
    board.add_argument("--title", default="pni benchmark leaderboard", help="the page title")
    board.set_defaults(func=cmd_leaderboard)


def need_checkpoint(args: argparse.Namespace) -> None:
    """A checkpoint is required unless ``--model`` is given."""
    if args.checkpoint is None:
        raise UsageError("give a checkpoint.pt (pni train) or --model PKG.MODULE:FACTORY")
