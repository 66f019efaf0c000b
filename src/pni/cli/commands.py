"""The ``pni`` command: info, train, eval, transfer, audit, report, demo. It parses arguments and calls the library.

Every user mistake ends in one line ``pni <cmd>: error: ...`` on stderr and exit status 2
(an unexpected failure: one line and status 1); ``--debug`` shows the traceback. SIGTERM and
SIGINT stop ``pni train`` after the current batch with a checkpoint (status 143, 130).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import __version__
from ..allocator import keep_freed_memory
from .benchmark import add_leaderboard_parser, add_model_arguments
from .certify import add_certify_parser
from .args import (
    Parser,
    UsageError,
    _add_config_flags,
    _positive_minutes,
    _writable_folder,
    add_audit_arguments,
    add_dataclass_flags,
    add_num_images_flag,
    add_eval_arguments,
    attack_options_from_args,
    audit_overrides,
    eval_settings_from_args,
    flag_fields,
    flag_values,
    peek_option,
    unknown_flags_message,
)
from ..attacks.threat import threat_eps
from ..evaluation.settings import TransferSettings
from .reproduce import add_reproduce_parser

USER_ERRORS: tuple[type[BaseException], ...] = ()


def _user_errors() -> tuple[type[BaseException], ...]:
    """What the CLI reports in one line: every pni error (``PNIError``) and OS errors
    (a file that cannot be read or written)."""
    from ..errors import PNIError

    return (PNIError, OSError)


def cmd_info(args: argparse.Namespace) -> int:
    from ..config import SCALES, list_presets
    from ..data import DATASETS, default_data_dir
    from ..models import MODELS
    from ..noise import GRANULARITIES, LOCATIONS

    print(f"pni {__version__}: Parametric Noise Injection (He, Rakin, Fan, CVPR 2019)")
    print(f"models:        {', '.join(MODELS)}")
    print(f"locations:     {', '.join(LOCATIONS)}  (Table 2)")
    print(f"granularities: {', '.join(GRANULARITIES)}")
    print(f"datasets:      {', '.join(DATASETS)}")
    print(f"presets:       {', '.join(list_presets())}  (scales: {', '.join(SCALES)})")
    print(f"data folder:   {default_data_dir()}  (set PNI_DATA or --data-dir)")
    from ..benchmark.protocol import PROTOCOLS
    from ..models.hub import pretrained_names
    print(f"pretrained:    {', '.join(pretrained_names('cpu'))}  (scale cpu: pni.pretrained(name))")
    print(f"benchmarks:    {', '.join(PROTOCOLS)}  (pni eval --benchmark; docs/BENCHMARK.md)")
    print(f"threads:       {_threads_line()}")
    return 0


def _threads_line() -> str:
    import torch

    from ..threads import ENV, WAIT_ENV

    return (f"{torch.get_num_threads()} of {os.cpu_count()} cores (--threads / ${ENV}; OpenMP wait policy "
            f"{os.environ.get(WAIT_ENV, 'default')})")


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import check_device, load_config
    from ..training.run import train_data, train_run

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    if overrides.get("data_dir"):  # stored resolved (absolute) in config.json: found from anywhere
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
    config = load_config(args.preset, args.scale, **overrides)
    check_device(config.device)
    _writable_folder(args.out)
    sink = None
    if args.tensorboard:
        from ..training.tensorboard_sink import TensorBoardSink

        sink = TensorBoardSink(args.tensorboard)  # one-line error if tensorboard is not installed
    train_set, test_set = train_data(config)
    print(f"training {config.model} (noise {config.location or 'none'}) on {config.dataset} "
          f"({len(train_set)} images), {config.epochs} epochs -> {args.out}")
    try:
        result = train_run(config, args.out, resume=args.resume, overwrite=args.overwrite,
                           max_minutes=args.max_minutes, save_every_minutes=args.save_every_minutes,
                           data=(train_set, test_set), epoch_callback=sink)
    finally:
        if sink is not None:
            sink.close()
    if result.stopped_early:
        print(f"stopped after epoch {result.last.get('epoch', 0)} of {config.epochs} "
              f"(--max-minutes {args.max_minutes:g}); continue with --resume")
    print(f"done: {Path(args.out) / 'checkpoint.pt'}  (log: {Path(args.out) / 'train_log.jsonl'})")
    if result.last:
        last = result.last
        print(f"last epoch: clean {100 * last.get('test_clean_acc', float('nan')):.2f}%  "
              f"PGD {100 * last.get('test_pgd_acc', float('nan')):.2f}%")
    return 0


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
    out = _writable_folder(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval")
    settings = eval_settings_from_args(
        args, attacks=tuple(args.attacks or EVAL_ATTACKS[args.protocol]), n=args.n, noise=args.noise == "both",
        votes=votes, worst_case=not paper, attack_options=options,
        cascade=() if paper or args.attacks else HONEST.cascade,   # AutoAttack's way: the robust images only
        **({"eps": threat_eps(args.threat, args.eps)} if args.threat else {}))
    device = distributed.init(settings.device)  # under torchrun: sharded, gathered on rank 0
    evaluation, label = evaluate_checkpoint(args.checkpoint, settings, device=str(device),
                                            progress=distributed.is_main(),
                                            distributed=distributed.is_initialized())
    if not distributed.is_main():
        return 0
    paths = write_evaluation(evaluation, out, label)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from ..attacks.transfer import transfer_checkpoints
    from ..reports.evaluation import write_transfer

    out = _writable_folder(Path(args.out) if args.out else Path(args.source).resolve().parent / "transfer")
    settings = dataclasses.asdict(TransferSettings(**flag_values(args, [f.name for f in flag_fields(TransferSettings)])))
    if settings.get("data_dir") is None:  # A records no data folder: found as pni eval finds it
        from ..checkpoint import read_checkpoint
        from ..runs import run_data

        config = read_checkpoint(args.source).get("config") or {}
        if config.get("data_dir") is None:
            settings["data_dir"] = run_data(args.source, config, settings["split"], settings.get("dataset"))[1]
    matrix = transfer_checkpoints([args.source, args.target, *args.more], settings.pop("attack"), **settings)
    paths = write_transfer(matrix, out)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from ..auditing import audit_checkpoint
    from ..reports.audit import write_audit
    from .benchmark import cmd_audit_model, need_checkpoint

    if args.model:
        return cmd_audit_model(args)
    need_checkpoint(args)
    if args.threat:
        args.eps = threat_eps(args.threat, args.eps)
    overrides = audit_overrides(args)
    out = _writable_folder(Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "audit")
    report = audit_checkpoint(args.checkpoint, eps=args.eps, n=args.n, surrogate=args.surrogate,
                              train_surrogate_model=not args.no_surrogate, dataset=args.dataset,
                              data_dir=args.data_dir, split=args.split, device=args.device,
                              progress=not args.quiet, **overrides)
    paths = write_audit(report, out)
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..reports.runs import write_runs_report

    _writable_folder(args.out)
    for run in args.runs:
        _check_run_config(Path(run))
    paths = write_runs_report(args.runs, args.out, title=args.title)
    print(f"written: {paths['markdown']}" + "".join(f", {p}" for k, p in paths.items() if k != "markdown"))
    return 0


def _check_run_config(run: Path) -> None:
    """A run folder's ``config.json``, when there is one, must be a JSON object."""
    import json

    path = run / "config.json"
    if not path.is_file():
        return
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"cannot read {str(path)!r}: {error}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{str(path)!r} is not a config (a JSON object of fields), "
                         f"got {type(values).__name__}")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _writable_folder(args.out)
    run_demo(out_dir=args.out, epochs=args.epochs, seed=args.seed, overwrite=args.overwrite,
             progress=not args.quiet)
    return 0


# --- parser --------------------------------------------------------------------------
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

    info = sub.add_parser("info", help="list the models, noise locations, datasets and presets")
    info.set_defaults(func=cmd_info)

    train = sub.add_parser("train", help="adversarial training with PNI (Eq. 10-12)",
                           description="Train a model from a preset; every field can be overridden.")
    train.add_argument("--preset", default="cifar-resnet20",
                       help="preset name (see `pni info`); default cifar-resnet20")
    train.add_argument("--scale", default="cpu",
                       help="smoke (seconds), cpu (about an hour on 2 cores) or paper; default cpu")
    train.add_argument("--out", required=True, help="output folder for checkpoint.pt and train_log.jsonl")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a run already in --out (kept aside until the new run's first checkpoint)")
    train.add_argument("--max-minutes", type=_positive_minutes, default=None,
                       help="stop after the last epoch that fits in this wall time (resume later)")
    train.add_argument("--save-every-minutes", type=_positive_minutes, default=None,
                       help="also write a mid-epoch checkpoint every this many minutes (SIGTERM and "
                            "SIGINT always write one after the current batch)")
    train.add_argument("--tensorboard", metavar="DIR", default=None,
                       help="also write every epoch's log record to TensorBoard event files in DIR "
                            "(needs the tensorboard package; train_log.jsonl is written either way)")
    words = list(sys.argv[1:] if argv is None else argv)  # --help shows the chosen preset's values
    _add_config_flags(train, peek_option(words, "--preset") or "cifar-resnet20",
                      peek_option(words, "--scale") or "cpu")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="accuracy under attacks over trials, noise on and off",
                        description="Evaluate a checkpoint: clean and attacked accuracy, mean ± std "
                                    "over trials, with and without the noise (Table 2 layout).")
    add_eval_arguments(ev)
    add_model_arguments(ev)
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="the whole method on MNIST in minutes, no download",
                          description="Train a vanilla adversarially trained LeNet-5 and a PNI-W one on "
                                      "the packaged MNIST sample, evaluate both, write a report.")
    demo.add_argument("--out", default="pni-demo", help="output folder (default pni-demo)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default from the demo setup)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true", help="replace a demo already in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    tr = sub.add_parser("transfer", help="transfer attack between checkpoints: the A=>B / B=>A matrix (Table 5)",
                        description="Adversarial examples made on each checkpoint (the source), accuracy of "
                                    "each other checkpoint (the target) on them: rows sources, columns "
                                    "targets, the diagonal is the white-box attack; then A => B and B => A "
                                    "as in the paper's Table 5 (left). Mean ± std over trials.")
    tr.add_argument("source", help="checkpoint A (its dataset and training eps are used)")
    tr.add_argument("target", help="checkpoint B")
    tr.add_argument("more", nargs="*", help="further checkpoints C, D, ...")
    add_dataclass_flags(tr, TransferSettings, exclude=("n",))
    add_num_images_flag(tr, "a class-stratified sample of N test images (default: all)")
    tr.add_argument("--out", default=None,
                    help="folder for transfer.json and transfer.md (default: <A's folder>/transfer)")
    tr.set_defaults(func=cmd_transfer)

    aud = sub.add_parser("audit", help="gradient-obfuscation checklist (Table 7) and the Fig. 3 sweeps",
                         description="Measure the checklist of Athalye et al. (2018) on a checkpoint: "
                                     "1 FGSM vs PGD, 2 black-box vs white-box, 3 unbounded attack, "
                                     "4 random sampling, 5 increasing eps, and beyond the paper 6 PGD "
                                     "steps to 100, 7 EOT samples 1 -> 30. Each item: evidence, verdict, rule.")
    add_audit_arguments(aud)
    add_model_arguments(aud, benchmark=False)
    aud.set_defaults(func=cmd_audit)

    rep = sub.add_parser("report", help="one Markdown report (tables and figures) for several runs",
                         description="Gather the train logs, evaluations (pni eval) and audits (pni audit) "
                                     "of run folders into one report laid out like the paper's tables.")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `pni train`")
    rep.add_argument("--out", default="pni-report", help="output folder (default pni-report)")
    rep.add_argument("--title", default="PNI runs", help="report title")
    rep.set_defaults(func=cmd_report)
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
