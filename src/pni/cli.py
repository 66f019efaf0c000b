"""The ``pni`` command: info, train, eval, transfer, audit, report, demo. It parses arguments and calls the library."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__

USER_ERRORS: tuple[type[BaseException], ...] = ()


def _user_errors() -> tuple[type[BaseException], ...]:
    from .attacks import AttackError
    from .audit import AuditError
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .distributed import DistributedError
    from .evaluate import EvaluationError
    from .models import ModelError
    from .noise import PNIError
    from .report import ReportError
    from .train import TrainingError

    return (AttackError, CheckpointError, ConfigError, DataError, DistributedError, EvaluationError,
            ModelError, PNIError, TrainingError, AuditError, ReportError)


# --- argument types ------------------------------------------------------------------

def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of minutes, got {text!r}")
    return value


def _parse_int_list(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def _parse_optional(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("none", "null", "") else inner(text)
    return parse


def _parse_eps(text: str) -> float:
    """A float, or a fraction such as 8/255."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError) as error:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.03 or 8/255, got {text!r}") from error


def _field_parser(field: dataclasses.Field) -> Callable[[str], Any]:
    hint = typing.get_type_hints(_train_config_cls())[field.name]
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    if typing.get_origin(hint) is list or typing.get_origin(base) is list:
        return _parse_int_list
    parser: Callable[[str], Any]
    if base is bool:
        parser = _parse_bool
    elif base is float:
        parser = _parse_eps
    elif base is int:
        parser = int
    else:
        parser = str
    return _parse_optional(parser) if optional else parser


def _train_config_cls() -> type:
    from .config import TrainConfig
    return TrainConfig


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from .config import FIELD_HELP, TrainConfig

    group = parser.add_argument_group("training fields (override the preset)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        group.add_argument(flag, dest=f"cfg_{field.name}", type=_field_parser(field),
                           default=argparse.SUPPRESS,
                           metavar=field.name.upper(),
                           help=f"{FIELD_HELP.get(field.name, field.name)} (default {default!r})")


# --- commands ------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    from .config import SCALES, list_presets
    from .data import DATASETS, default_data_dir
    from .models import MODELS
    from .noise import GRANULARITIES, LOCATIONS

    print(f"pni {__version__}: Parametric Noise Injection (He, Rakin, Fan, CVPR 2019)")
    print(f"models:        {', '.join(MODELS)}")
    print(f"locations:     {', '.join(LOCATIONS)}  (Table 2)")
    print(f"granularities: {', '.join(GRANULARITIES)}")
    print(f"datasets:      {', '.join(DATASETS)}")
    print(f"presets:       {', '.join(list_presets())}  (scales: {', '.join(SCALES)})")
    print(f"data folder:   {default_data_dir()}  (set PNI_DATA or --data-dir)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import load_dataset
    from .train import build_model, fit

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    config = load_config(args.preset, args.scale, **overrides)
    train_set = load_dataset(config.dataset, "train", config.data_dir, config.download)
    if config.train_subset:
        train_set = train_set.subset(config.train_subset)
    test_set = load_dataset(config.dataset, "test", config.data_dir, config.download)
    model = build_model(config, train_set)
    print(f"training {config.model} (noise {config.location or 'none'}) on {config.dataset} "
          f"({len(train_set)} images), {config.epochs} epochs -> {args.out}")
    result = fit(model, train_set, config, test_set, out_dir=args.out, resume=args.resume,
                 overwrite=args.overwrite, max_minutes=args.max_minutes)
    if result.stopped_early:
        print(f"stopped after epoch {result.last.get('epoch', 0)} of {config.epochs} "
              f"(--max-minutes {args.max_minutes:g}); continue with --resume")
    print(f"done: {Path(args.out) / 'checkpoint.pt'}  (log: {Path(args.out) / 'train_log.jsonl'})")
    if result.last:
        last = result.last
        print(f"last epoch: clean {100 * last.get('test_clean_acc', float('nan')):.2f}%  "
              f"PGD {100 * last.get('test_pgd_acc', float('nan')):.2f}%")
    return 0


def _parse_attacks(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of attack names")
    return names


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from .attacks.cw import CW_PROFILES
    from .attacks.registry import DEFAULT_EOT, DEFAULT_VOTES, PROTOCOLS, attack_names

    parser.add_argument("checkpoint", help="checkpoint.pt written by `pni train`")
    parser.add_argument("--attacks", type=_parse_attacks, default=None,
                        help=f"comma-separated attacks among {', '.join(attack_names())} "
                             f"(default: the protocol's)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="honest",
                        help=f"honest (default): {','.join(PROTOCOLS['honest'])}, predictions judged over "
                             f"--votes noise draws, plus the per-sample worst case over the attacks; "
                             f"paper: the paper's {','.join(PROTOCOLS['paper'])}, one pass each")
    parser.add_argument("--votes", type=int, default=None,
                        help=f"noise draws each prediction is judged over: expected and majority-vote "
                             f"accuracy (default {DEFAULT_VOTES}; 1 with --protocol paper)")
    parser.add_argument("--eot", type=int, default=None,
                        help=f"EOT-PGD: noise draws the gradient is averaged over (default {DEFAULT_EOT})")
    parser.add_argument("--cw-profile", choices=tuple(CW_PROFILES), default="paper",
                        help="C&W-L2 settings: paper (c 0.01, lr 5e-4, 10 steps, 9 binary-search steps) "
                             "or strong (1000 steps, lr 0.01)")
    parser.add_argument("--zoo-steps", type=int, default=None,
                        help="ZOO iterations of 128 coordinates (default 1000; slow: 257 queries each)")
    parser.add_argument("--aa-iterations", type=int, default=None,
                        help="AutoAttack: APGD/FAB iterations (default 100, pyautoattack's), for quick runs")
    parser.add_argument("--trials", type=int, default=5, help="trials with distinct seeds (paper: 5)")
    parser.add_argument("--n", "--num-images", dest="n", type=int, default=None,
                        help="evaluate a class-stratified sample of N test images (default: all); under torchrun "
                             "write --num-images (torchrun takes --n for its own --nnodes)")
    parser.add_argument("--eps", type=_parse_eps, default=None,
                        help="L-inf radius, e.g. 8/255 (default: the checkpoint's training eps)")
    parser.add_argument("--steps", type=int, default=None,
                        help="PGD steps (default: 7 for CIFAR-like data, 40 for MNIST-like, as the paper)")
    parser.add_argument("--step-size", type=_parse_eps, default=None,
                        help="PGD step size (default: the checkpoint's training step size)")
    parser.add_argument("--noise", choices=("both", "off"), default="both",
                        help="both: test with and without PNI (Table 2); off: without only")
    parser.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's)")
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--out", default=None,
                        help="folder for results.json and results.md (default: <checkpoint folder>/eval)")


def cmd_eval(args: argparse.Namespace) -> int:
    from . import distributed
    from .evaluate import evaluate_checkpoint
    from .report import write_evaluation

    from .attacks.registry import DEFAULT_VOTES, PROTOCOLS

    paper = args.protocol == "paper"
    votes = args.votes if args.votes is not None else (1 if paper else DEFAULT_VOTES)
    options = {"eot": args.eot, "cw_profile": args.cw_profile,
               "zoo": {"steps": args.zoo_steps} if args.zoo_steps is not None else None,
               "aa": {"n_iter": args.aa_iterations} if args.aa_iterations is not None else None}
    device = distributed.init(args.device)  # under torchrun: sharded, gathered on rank 0
    evaluation, label = evaluate_checkpoint(
        args.checkpoint, attacks=args.attacks or list(PROTOCOLS[args.protocol]), trials=args.trials,
        n=args.n, eps=args.eps, steps=args.steps, step_size=args.step_size, noise=args.noise == "both",
        dataset=args.dataset, data_dir=args.data_dir, split=args.split,
        batch_size=args.batch_size, seed=args.seed, device=str(device),
        progress=distributed.is_main(), distributed=distributed.is_initialized(), votes=votes,
        worst_case=not paper, attack_options=options)
    if not distributed.is_main():
        return 0
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    paths = write_evaluation(evaluation, out, label)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from .attacks.transfer import transfer_checkpoints
    from .report import write_transfer

    matrix = transfer_checkpoints(
        [args.source, args.target, *args.more], attack=args.attack, trials=args.trials, n=args.n,
        eps=args.eps, steps=args.steps, step_size=args.step_size, votes=args.votes,
        dataset=args.dataset, data_dir=args.data_dir, split=args.split, batch_size=args.batch_size,
        seed=args.seed, device=args.device)
    out = Path(args.out) if args.out else Path(args.source).resolve().parent / "transfer"
    paths = write_transfer(matrix, out)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
    return 0


def _parse_eps_list(text: str) -> list[float]:
    """Comma-separated numbers or fractions such as 0,2/255,8/255."""
    values = [_parse_eps(p.strip()) for p in text.split(",") if p.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    from .audit import AuditSettings

    d = AuditSettings(eps=8 / 255)
    ints = lambda values: ",".join(map(str, values))  # noqa: E731
    parser.add_argument("checkpoint", help="checkpoint.pt written by `pni train`")
    parser.add_argument("--eps", type=_parse_eps, default=None,
                        help="L-inf radius audited, e.g. 8/255 (default: the checkpoint's training eps)")
    parser.add_argument("--n", type=int, default=500, help="audit a class-stratified sample of N test images (default 500)")
    parser.add_argument("--items", type=_parse_int_list, default=None,
                        help="comma-separated checklist items to run, 1-7 (default: all)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"PGD steps of items 1, 2, 4, 5, 7 (default {d.steps})")
    parser.add_argument("--step-size", type=_parse_eps, default=None,
                        help="PGD step size (default 2.5 * eps / steps)")
    parser.add_argument("--trials", type=int, default=None,
                        help=f"seeds per accuracy (default {d.trials})")
    parser.add_argument("--eps-values", type=_parse_eps_list, default=None,
                        help="item 5 / Fig. 3 top: eps values (default eps x 0,0.25,0.5,1,1.5,2, at most 1)")
    parser.add_argument("--steps-values", type=_parse_int_list, default=None,
                        help=f"item 6 / Fig. 3 bottom: PGD steps (default {ints(d.steps_values)})")
    parser.add_argument("--eot-ks", type=_parse_int_list, default=None,
                        help=f"item 7: EOT samples per gradient (default {ints(d.eot_ks)})")
    parser.add_argument("--max-eot-drop", type=float, default=None,
                        help=f"item 7: flag when EOT takes more accuracy than this fraction "
                             f"(default {d.max_eot_drop})")
    parser.add_argument("--random-samples", type=int, default=None,
                        help=f"item 4: random points per image (default {d.random_samples})")
    parser.add_argument("--random-n", type=int, default=None,
                        help=f"item 4: images searched at random (default {d.random_n})")
    parser.add_argument("--unbounded-steps", type=int, default=None,
                        help=f"item 3: PGD steps at eps 1 (default {d.unbounded_steps})")
    parser.add_argument("--surrogate", default=None,
                        help="item 2: checkpoint of the transfer attack's source model "
                             "(default: train one on the training split)")
    parser.add_argument("--no-surrogate", action="store_true",
                        help="item 2: do not train a surrogate (transfer attack not measured)")
    parser.add_argument("--surrogate-epochs", type=int, default=None,
                        help=f"item 2: epochs of the surrogate trained by pni (default {d.surrogate_epochs})")
    parser.add_argument("--surrogate-train-n", type=int, default=None,
                        help=f"item 2: training images of that surrogate (default {d.surrogate_train_n})")
    parser.add_argument("--score-n", type=int, default=None,
                        help=f"item 2: images attacked by ZOO, score-based (default {d.score_n}; 0: none)")
    parser.add_argument("--score-queries", type=int, default=None,
                        help=f"item 2: ZOO queries per image (default {d.score_queries})")
    parser.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's)")
    parser.add_argument("--split", default="test", help="dataset split audited (default test)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"batch size (default {d.batch_size})")
    parser.add_argument("--seed", type=int, default=None, help=f"random seed (default {d.seed})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--out", default=None,
                        help="folder for audit.json, audit.md and the figures "
                             "(default: <checkpoint folder>/audit)")


AUDIT_OVERRIDES = ("items", "steps", "step_size", "trials", "eps_values", "steps_values", "eot_ks",
                   "max_eot_drop", "random_samples", "random_n", "unbounded_steps", "surrogate_epochs",
                   "surrogate_train_n", "score_n", "score_queries", "batch_size", "seed")


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit_checkpoint, write_audit

    overrides = {name: getattr(args, name) for name in AUDIT_OVERRIDES if getattr(args, name) is not None}
    report = audit_checkpoint(args.checkpoint, eps=args.eps, n=args.n, surrogate=args.surrogate,
                              train_surrogate_model=not args.no_surrogate, dataset=args.dataset,
                              data_dir=args.data_dir, split=args.split, device=args.device,
                              progress=not args.quiet, **overrides)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "audit"
    paths = write_audit(report, out)
    print(paths["markdown"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_runs_report

    paths = write_runs_report(args.runs, args.out, title=args.title)
    print(f"written: {paths['markdown']}" + "".join(f", {p}" for k, p in paths.items() if k != "markdown"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(out_dir=args.out, epochs=args.epochs, seed=args.seed, overwrite=args.overwrite,
             progress=not args.quiet)
    return 0


# --- parser --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pni", description="Parametric Noise Injection: train, evaluate and audit PNI models.")
    parser.add_argument("--version", action="version", version=f"pni {__version__}")
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
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--max-minutes", type=_positive_minutes, default=None,
                       help="stop after the last epoch that fits in this wall time (resume later)")
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="accuracy under attacks over trials, noise on and off",
                        description="Evaluate a checkpoint: clean and attacked accuracy, mean ± std "
                                    "over trials, with and without the noise (Table 2 layout).")
    add_eval_arguments(ev)
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
    tr.add_argument("--attack", default="pgd", help="attack run on the source (default pgd; any `pni eval` name)")
    tr.add_argument("--trials", type=int, default=5, help="trials with distinct seeds (paper: 5)")
    tr.add_argument("--n", type=int, default=None, help="a class-stratified sample of N test images (default: all)")
    tr.add_argument("--eps", type=_parse_eps, default=None, help="L-inf radius (default: A's training eps)")
    tr.add_argument("--steps", type=int, default=None, help="PGD steps (default 7, or 40 for MNIST-like data)")
    tr.add_argument("--step-size", type=_parse_eps, default=None, help="PGD step size (default: A's)")
    tr.add_argument("--votes", type=int, default=1, help="noise draws each target prediction is judged over")
    tr.add_argument("--dataset", default=None, help="dataset (default: A's)")
    tr.add_argument("--data-dir", default=None, help="dataset folder (default: A's)")
    tr.add_argument("--split", default="test", help="dataset split (default test)")
    tr.add_argument("--batch-size", type=int, default=256, help="batch size")
    tr.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    tr.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    tr.add_argument("--out", default=None,
                    help="folder for transfer.json and transfer.md (default: <A's folder>/transfer)")
    tr.set_defaults(func=cmd_transfer)

    aud = sub.add_parser("audit", help="gradient-obfuscation checklist (Table 7) and the Fig. 3 sweeps",
                         description="Measure the checklist of Athalye et al. (2018) on a checkpoint: "
                                     "1 FGSM vs PGD, 2 black-box vs white-box, 3 unbounded attack, "
                                     "4 random sampling, 5 increasing eps, and beyond the paper 6 PGD "
                                     "steps to 100, 7 EOT samples 1 -> 30. Each item: evidence, verdict, rule.")
    add_audit_arguments(aud)
    aud.set_defaults(func=cmd_audit)

    rep = sub.add_parser("report", help="one Markdown report (tables and figures) for several runs",
                         description="Gather the train logs, evaluations (pni eval) and audits (pni audit) "
                                     "of run folders into one report laid out like the paper's tables.")
    rep.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `pni train`")
    rep.add_argument("--out", default="pni-report", help="output folder (default pni-report)")
    rep.add_argument("--title", default="PNI runs", help="report title")
    rep.set_defaults(func=cmd_report)
    return parser


@contextlib.contextmanager
def _torchrun_process() -> Iterator[None]:
    """Under ``torchrun`` (WORLD_SIZE > 1): only rank 0 prints to stdout, and the process
    group the command joined (train, eval) is left at the end. A no-op otherwise."""
    from . import distributed

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _torchrun_process():
            return int(args.func(args) or 0)
    except _user_errors() as error:
        print(f"pni {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pni {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
