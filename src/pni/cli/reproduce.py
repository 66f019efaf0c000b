"""``pni reproduce NAME --scale smoke|cpu|paper``: the parser and the command, for
``pni.cli`` to mount with ``add_reproduce_parser(sub)``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import SCALES
from ..reproduce.plans import NAMES

REPORT_OUT = "docs/RESULTS.md"


def add_reproduce_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``reproduce`` subcommand to ``subparsers`` (``parser.add_subparsers()``)."""
    rep = subparsers.add_parser(
        "reproduce", help="reproduce a table or figure of the paper (train, eval, transfer, audit)",
        description="Run the plan of a paper table or figure: every training run, evaluation, transfer "
                    "and audit it needs, each in its own folder under --out. Finished steps are reused, "
                    "an interrupted training run or evaluation resumes: stop at any moment and run again to "
                    "continue.")
    rep.add_argument("name", metavar="NAME", help=f"one of: {', '.join(NAMES)}")
    rep.add_argument("--scale", choices=SCALES, default="cpu",
                     help="smoke (seconds, packaged MNIST sample), cpu (tens of CPU hours for all: --dry-run "
                          "estimates what is left), paper (the paper's settings; a GPU); default cpu")
    rep.add_argument("--out", default=None, help="results folder (default results/<scale>)")
    rep.add_argument("--dry-run", action="store_true",
                     help="print the plan: every step, its settings, whether it is done, estimated time")
    rep.add_argument("--only", metavar="ROW", default=None, help="run only this row of the plan (its id)")
    rep.add_argument("--track", metavar="NAME", default=None,
                     help="run only the steps of this track (e.g. mnist, cifar10-jpeg at cpu scale): two "
                          "tracks can run side by side in two processes")
    rep.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    rep.add_argument("--data-dir", metavar="PATH", default=None,
                     help="CIFAR-10 as an image folder or zip (train/<class>/*, test/<class>/*) for the "
                          "CIFAR tracks, e.g. the JPEG copy on a machine that cannot download CIFAR-10 "
                          "(other data: other run keys; the report says which data)")
    rep.add_argument("--concurrent", metavar="K", default="auto",
                     help="train up to K unfinished runs of the plan together in this process, each "
                          "as it would be alone (default auto: 1 off CUDA; on CUDA free GiB // "
                          "4, at most 9)")
    rep.add_argument("--max-minutes", type=float, default=None,
                     help="stop after the last training epoch that fits in this wall time (checkpointed; "
                          "run again to continue)")
    rep.add_argument("--report", action="store_true",
                     help="write the report (paper vs ours, honest counterparts, verdicts) from the "
                          "results already in --out; runs nothing")
    rep.add_argument("--report-out", metavar="PATH", default=None,
                     help="where --report writes (default <out>/RESULTS.md, the results folder; "
                          "docs/RESULTS.md with --update-docs)")
    rep.add_argument("--update-docs", action="store_true",
                     help="with --report: write the committed docs/RESULTS.md and the README's verdict "
                          "block (what the repository's own cpu-scale report is regenerated with)")
    rep.add_argument("--readme", metavar="PATH", default=None,
                     help="README whose block between <!-- verdicts:start --> and <!-- verdicts:end --> "
                          "--report rewrites with one line per claim (default README.md with --update-docs, "
                          "else none; '' for none)")
    rep.add_argument("--force", action="store_true",
                     help="with --report: replace a report (or README block) built from another scale or "
                          "results folder (refused otherwise)")
    rep.set_defaults(func=cmd_reproduce)
    return rep


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..reproduce.plans import get_plans, resolve
    from ..reproduce.runner import Runner
    from ..reproduce.scales import tracks
    from ..reproduce.steps import ReproduceError

    try:
        if args.name not in NAMES:
            from ..errors import did_you_mean

            raise ReproduceError(f"unknown plan {args.name!r}{did_you_mean(args.name, NAMES)}; expected one of: "
                                 f"{', '.join(NAMES)}")
        plans = get_plans(args.name)
        if args.max_minutes is not None and not args.max_minutes > 0:
            raise ReproduceError(f"--max-minutes must be a positive number of minutes, got {args.max_minutes:g}")
        if args.data_dir is not None and not Path(args.data_dir).exists():
            raise ReproduceError(f"--data-dir {args.data_dir}: no such folder or zip")
        steps = resolve(plans, args.scale, args.only, data_dir=args.data_dir)
        if args.track is not None:
            names = [t.name for t in tracks(args.scale, args.data_dir)]
            if args.track not in names:
                raise ReproduceError(f"unknown track {args.track!r} at {args.scale} scale; expected one of: "
                                     f"{', '.join(names)}")
            steps = [s for s in steps if s.track == args.track]
        out = Path(args.out) if args.out else Path("results") / args.scale
        if args.report:
            from ..reproduce.report import check_replace, write_readme_summary, write_results

            target = args.report_out or (REPORT_OUT if args.update_docs else str(out / "RESULTS.md"))
            readme = args.readme if args.readme is not None else ("README.md" if args.update_docs else "")
            flags = " --update-docs" if args.update_docs else ""
            for path, block in ((target, False), (readme, True)):  # refuse before writing either
                if path:
                    check_replace(path, args.scale, out, args.force, block=block)
            path = write_results(plans, args.scale, out, target, args.data_dir, force=True, flags=flags)
            print(f"report of {args.name} at {args.scale} scale from {out} written to {path}"
                  + ("" if args.update_docs or args.report_out else
                     " (docs/RESULTS.md and the README's verdicts: add --update-docs)"))
            if readme:
                print(write_readme_summary(plans, args.scale, out, readme, path, args.data_dir, force=True,
                                           flags=flags))
            return 0
        if args.dry_run:
            print_plan(plans, steps, args.scale, out, args.device, args.data_dir)
            if args.name == "all" and args.only is None and args.track is None:
                print_unplanned(steps, out)
            return 0
        runner = Runner(out, args.device, max_minutes=args.max_minutes,
                        concurrent=_concurrency(args.concurrent, args.device))
        outcome = runner.run(steps)
    except ReproduceError as error:
        print(f"pni reproduce: error: {error}", file=sys.stderr)
        return 2
    ran = sum(v == "ran" for v in outcome.values())
    stopped = f"; stopped by --max-minutes, {len(steps) - len(outcome)} step(s) left" if runner.stopped_early else ""
    print(f"{args.name} at {args.scale} scale: {ran} step(s) run, {len(outcome) - ran} reused{stopped}; "
          f"results in {out}")
    return 0


def _concurrency(text: str, device: str) -> int:
    """``--concurrent``: a whole number >= 1, or ``auto`` (``runner.auto_concurrency``)."""
    from ..reproduce.runner import auto_concurrency
    from ..reproduce.steps import ReproduceError

    if text == "auto":
        return auto_concurrency(device)
    if not text.isdigit() or int(text) < 1:
        raise ReproduceError(f"--concurrent must be a whole number >= 1 or auto, got {text!r}")
    return int(text)


def unplanned_folders(steps: list[Any], out: Path) -> list[Path]:
    """Step folders under ``out`` (run folders and the step folders inside them) that no step
    of ``steps`` names: left by earlier settings of the plan; the report ignores them."""
    keys = {s.key for s in steps}
    runs = {key.split("/")[0] for key in keys}
    found = []
    for run in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) if out.is_dir() else []:
        if run.name not in runs:
            found.append(run)
            continue
        found += [p for p in sorted(run.iterdir()) if p.is_dir() and not p.name.startswith(".")
                  and f"{run.name}/{p.name}" not in keys]
    return found


def print_unplanned(steps: list[Any], out: Path) -> None:
    found = unplanned_folders(steps, out)
    if found:
        print(f"{len(found)} folder(s) under {out} belong to no step of the plan (run with earlier settings; the "
              f"report ignores them; delete them or keep them for reference): "
              + ", ".join(str(p.relative_to(out)) for p in found))


def print_plan(plans: list[Any], steps: list[Any], scale: str, out: Path, device: str,
               data_dir: str | None = None) -> float:
    """Prints every step (status, settings, rows, estimated time); returns the seconds left."""
    from ..folder_lock import held_elsewhere
    from ..reproduce.estimate import (
        RateMeter,
        cpu_spent,
        finished_times,
        format_seconds,
        spent_seconds,
        step_seconds,
    )
    from ..reproduce.runner import state
    from ..reproduce.scales import tracks

    print(f"pni reproduce {', '.join(p.name for p in plans)} --scale {scale} (out: {out})")
    for track in tracks(scale, data_dir):
        print(f"  track {track.name}: {track.note}")
    for plan in plans:
        print(f"  {plan.name}: {plan.title}" + (f" [{plan.notes}]" if plan.notes else ""))
    meter = RateMeter(device)
    meter.calibrate(steps, out)
    runs = {s.key: s for s in steps if s.kind == "train"}
    times = finished_times(steps, runs, meter, out)
    total = 0.0
    done = 0
    for step in steps:
        status, detail = state(step, out)
        seconds = 0.0 if status == "done" else step_seconds(step, runs, meter, out, times)
        total += seconds
        done += status == "done"
        tag = f"{status}{' ' + detail if detail else ''}"
        if status != "done" and held_elsewhere(out / step.key):
            tag += ", running in another process"
        print(f"- [{tag}] {step.kind} {step.key} ({step.track})\n    {step.summary}\n"
              f"    rows: {', '.join(step.rows)}; estimated {format_seconds(seconds)}")
    print(f"{done}/{len(steps)} steps done; estimated time left on this machine ({device}): "
          f"{format_seconds(total)}")
    spent, timed = spent_seconds(steps, out)
    by_track = {t.name: spent_seconds([s for s in steps if s.track == t.name], out)[0]
                for t in tracks(scale, data_dir)}
    print(f"time spent on the done steps: {format_seconds(spent)} ({timed} of {done} steps timed; "
          + ", ".join(f"{name} {format_seconds(sec)}" for name, sec in by_track.items())
          + f"); the whole plan: about {format_seconds(spent + total)}")
    cpu, wall, counted = cpu_spent(steps, out)
    if counted:
        shared = "; more wall than CPU time: other processes shared the cores" if wall > 1.1 * cpu else ""
        print(f"CPU time recorded by {counted} of the done steps: {format_seconds(cpu)} (their wall time "
              f"{format_seconds(wall)}{shared})")
    print(f"(estimate from the times of finished steps of the same kind, else from {meter.describe()})")
    if scale == "paper":
        print_gpu_minutes(steps, out, data_dir)
    return total


def print_gpu_minutes(steps: list[Any], out: Path, data_dir: str | None) -> float | None:
    """GPU-minutes of training left per run of ``steps`` and for Tables 1-2 at the last rate
    measured on CUDA (``estimate.gpu_minutes_left``); returns Tables 1-2's (None: a run has
    no rate yet)."""
    from ..reproduce.estimate import gpu_minutes_left
    from ..reproduce.plans import get_plans, resolve

    def minutes(rows: list[Any]) -> tuple[float, list[str]]:
        missing = [step.key for step, left, seconds, _ in rows if seconds is None and left]
        return sum(left * seconds for _, left, seconds, _ in rows if seconds is not None) / 60, missing

    rows = [r for r in gpu_minutes_left(steps, out) if r[1]]
    print("GPU-minutes of training left at the last rate measured on CUDA (median of a run's last 5 logged "
          "epochs, training steps only; an epoch trained beside other runs counts its share of the wall time):")
    for step, left, seconds, source in rows:
        rate = "no rate measured on CUDA yet" if seconds is None else \
            f"{left} epochs x {seconds:.1f} s = {left * seconds / 60:.1f} min" + \
            ("" if source == "own log" else " (rate of a run like it)")
        print(f"  {step.key}: {rate}")
    tables = [r for r in gpu_minutes_left(resolve(get_plans("table2") + get_plans("table1"), "paper",
                                                  data_dir=data_dir), out)]
    total, missing = minutes(tables)
    left = sum(1 for r in tables if r[1])
    print(f"Tables 1-2 ({len(tables)} runs, {left} unfinished): {total:.1f} GPU-minutes of training left"
          + (f", plus {len(missing)} run(s) with no rate yet" if missing else ""))
    return None if missing else total
