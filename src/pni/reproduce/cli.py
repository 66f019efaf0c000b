"""``pni reproduce NAME --scale smoke|cpu|paper``: the parser and the command, for
``pni.cli`` to mount with ``add_reproduce_parser(sub)``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import SCALES
from .plans import NAMES


def add_reproduce_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``reproduce`` subcommand to ``subparsers`` (``parser.add_subparsers()``)."""
    rep = subparsers.add_parser(
        "reproduce", help="reproduce a table or figure of the paper (train, eval, transfer, audit)",
        description="Run the plan of a paper table or figure: every training run, evaluation, transfer "
                    "and audit it needs, each in its own folder under --out. Finished steps are reused, "
                    "an interrupted training run resumes: stop at any moment and run again to continue.")
    rep.add_argument("name", metavar="NAME", help=f"one of: {', '.join(NAMES)}")
    rep.add_argument("--scale", choices=SCALES, default="cpu",
                     help="smoke (seconds, packaged MNIST sample), cpu (about 12 h on 2 cores for all), "
                          "paper (the paper's settings; a GPU); default cpu")
    rep.add_argument("--out", default=None, help="results folder (default results/<scale>)")
    rep.add_argument("--dry-run", action="store_true",
                     help="print the plan: every step, its settings, whether it is done, estimated time")
    rep.add_argument("--only", metavar="ROW", default=None, help="run only this row of the plan (its id)")
    rep.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    rep.add_argument("--report", action="store_true",
                     help="write the report (paper vs ours, honest counterparts, verdicts) from the "
                          "results already in --out; runs nothing")
    rep.add_argument("--report-out", metavar="PATH", default="docs/RESULTS.md",
                     help="where --report writes (default docs/RESULTS.md)")
    rep.set_defaults(func=cmd_reproduce)
    return rep


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .plans import get_plans, resolve
    from .runner import Runner
    from .steps import ReproduceError

    try:
        plans = get_plans(args.name)
        steps = resolve(plans, args.scale, args.only)
        out = Path(args.out) if args.out else Path("results") / args.scale
        if args.report:
            from .report import write_results

            path = write_results(plans, args.scale, out, args.report_out)
            print(f"report of {args.name} at {args.scale} scale from {out} written to {path}")
            return 0
        if args.dry_run:
            print_plan(plans, steps, args.scale, out, args.device)
            return 0
        outcome = Runner(out, args.device).run(steps)
    except ReproduceError as error:
        print(f"pni reproduce: error: {error}", file=sys.stderr)
        return 2
    ran = sum(v == "ran" for v in outcome.values())
    print(f"{args.name} at {args.scale} scale: {ran} step(s) run, {len(outcome) - ran} reused; "
          f"results in {out}")
    return 0


def print_plan(plans: list[Any], steps: list[Any], scale: str, out: Path, device: str) -> float:
    """Prints every step (status, settings, rows, estimated time); returns the seconds left."""
    from .estimate import RateMeter, format_seconds, step_seconds
    from .runner import state
    from .scales import tracks

    print(f"pni reproduce {', '.join(p.name for p in plans)} --scale {scale} (out: {out})")
    for track in tracks(scale):
        print(f"  track {track.name}: {track.note}")
    for plan in plans:
        print(f"  {plan.name}: {plan.title}" + (f" [{plan.notes}]" if plan.notes else ""))
    meter = RateMeter(device)
    runs = {s.key: s for s in steps if s.kind == "train"}
    total = 0.0
    done = 0
    for step in steps:
        status, detail = state(step, out)
        seconds = 0.0 if status == "done" else step_seconds(step, runs, meter, out)
        total += seconds
        done += status == "done"
        tag = f"{status}{' ' + detail if detail else ''}"
        print(f"- [{tag}] {step.kind} {step.key} ({step.track})\n    {step.summary}\n"
              f"    rows: {', '.join(step.rows)}; estimated {format_seconds(seconds)}")
    rates = ", ".join(f"{k[0]}x{k[1]:g} {'x'.join(map(str, k[2]))} PGD-{k[3]}{' noise' if k[4] else ''}: "
                      f"{v:.0f} img/s"
                      for k, v in meter.rates.items())
    print(f"{done}/{len(steps)} steps done; estimated time left on this machine ({device}): "
          f"{format_seconds(total)}")
    print(f"(estimate from training images/s measured just now with pni.train.fit on random "
          f"images: {rates or 'none needed'}; attacks counted as forward+backward passes)")
    return total
