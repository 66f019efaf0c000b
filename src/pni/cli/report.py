"""``pni report RUN_DIR...``: one Markdown report (tables and figures) for several run folders."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..runs import CONFIG
from .args import UsageError, writable_folder


def add_report_parser(sub: Any) -> None:
    rep = sub.add_parser("report", help="one Markdown report (tables and figures) for several runs",
                         description="Gather the train logs, evaluations (pni eval) and audits (pni audit) "
                                     "of run folders into one report laid out like the paper's tables.")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `pni train`")
    rep.add_argument("--out", default="pni-report", help="output folder (default pni-report)")
    rep.add_argument("--title", default="PNI runs", help="report title")
    rep.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..reports.runs import write_runs_report

    writable_folder(args.out)
    for run in args.runs:
        _check_run_config(Path(run))
    paths = write_runs_report(args.runs, args.out, title=args.title)
    print(f"written: {paths['markdown']}" + "".join(f", {p}" for k, p in paths.items() if k != "markdown"))
    return 0


def _check_run_config(run: Path) -> None:
    """A run folder's ``config.json``, when there is one, must be a JSON object."""
    import json

    path = run / CONFIG
    if not path.is_file():
        return
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"cannot read {str(path)!r}: {error}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{str(path)!r} is not a config (a JSON object of fields), "
                         f"got {type(values).__name__}")
