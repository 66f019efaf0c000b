"""The ``pni`` command: the parser, mounted from one module per subcommand (``info``, ``train``,
``evaluate``, ``transfer``, ``audit``, ``report``, ``demo``, ``certify``, ``reproduce``, and
``benchmark``'s leaderboard), and ``main``, which runs one.

Every user mistake ends in one line ``pni <cmd>: error: ...`` on stderr and exit status 2
(an unexpected failure: one line and status 1); ``--debug`` shows the traceback. SIGTERM and
SIGINT stop ``pni train`` after the current batch with a checkpoint (status 143, 130).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence

from .. import __version__
from ..allocator import keep_freed_memory
from .args import Parser, unknown_flags_message
from .audit import add_audit_parser
from .benchmark import add_leaderboard_parser
from .certify import add_certify_parser
from .demo import add_demo_parser
from .evaluate import add_eval_parser
from .info import add_info_parser
from .report import add_report_parser
from .reproduce import add_reproduce_parser
from .train import add_train_parser
from .transfer import add_transfer_parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """What the CLI reports in one line: every pni error (``PNIError``) and OS errors
    (a file that cannot be read or written)."""
    from ..errors import PNIError

    return (PNIError, OSError)


THREADS_HELP = ("CPU threads for torch (default: $PNI_THREADS, else auto: one per core, waiting passively, "
                "which holds up on a machine shared with other busy processes; 'auto' or 0 asks for it). "
                "Checkpoints are byte-identical only between runs with the same thread count")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="pni", description="Parametric Noise Injection: train, evaluate and audit PNI models.")
    parser.add_argument("--version", action="version", version=f"pni {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("--threads", metavar="N", default=None, help=THREADS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    words = list(sys.argv[1:] if argv is None else argv)  # pni train --help shows the chosen preset's values
    add_info_parser(sub)
    add_train_parser(sub, words)
    add_eval_parser(sub)
    add_demo_parser(sub)
    add_transfer_parser(sub)
    add_audit_parser(sub)
    add_report_parser(sub)
    add_leaderboard_parser(sub)
    add_certify_parser(sub)
    add_reproduce_parser(sub)
    for name, command in sub.choices.items():
        if name not in ("certify", "reproduce"):
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show the traceback of an error")
        command.add_argument("--threads", metavar="N", default=argparse.SUPPRESS, help=THREADS_HELP)
    return parser


@contextlib.contextmanager
def _torchrun_process() -> Iterator[None]:
    """Under ``torchrun`` (WORLD_SIZE > 1): only rank 0 prints to stdout, and the process
    group the command joined (train, eval) is left at the end. A no-op otherwise."""
    from .. import distributed

    if not distributed.launched():
        yield
        return
    try:
        with contextlib.ExitStack() as stack:
            if os.environ.get("RANK", "0") != "0":
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            yield
    finally:
        distributed.cleanup()


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    from ..training.run_folder import TrainingInterrupted

    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command it was given to, in one line, with the closest flags
        command = getattr(args, "command", None)
        prog = f"pni {command}" if command else "pni"
        sub = next((a.choices[command] for a in parser._subparsers._group_actions if command in a.choices),
                   parser) if command and parser._subparsers else parser
        print(f"{prog}: error: {unknown_flags_message(sub, unknown)} (see {prog} --help)", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # large attack batches reuse freed memory instead of faulting in fresh pages
    prefix = f"pni {args.command}"
    from ..threads import ThreadsError, apply_threads

    try:  # OMP_WAIT_POLICY=PASSIVE was set by pni/__init__ before torch started (pni.threads)
        apply_threads(getattr(args, "threads", None))
    except ThreadsError as error:
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
    try:
        with _torchrun_process():
            return int(args.func(args) or 0)
    except TrainingInterrupted as stop:  # a checkpoint was written: resume later
        if os.environ.get("RANK", "0") == "0":
            print(f"{prefix}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as error:
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # not a user mistake: still one line, the traceback on demand
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: error: {type(error).__name__}: {_one_line(error)} (unexpected; rerun "
              f"with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
