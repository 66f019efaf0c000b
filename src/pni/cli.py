"""The ``pni`` command: info, train, eval, demo. It parses arguments and calls the library."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__

USER_ERRORS: tuple[type[BaseException], ...] = ()


def _user_errors() -> tuple[type[BaseException], ...]:
    from .attacks import AttackError
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .evaluate import EvaluationError
    from .models import ModelError
    from .noise import PNIError
    from .train import TrainingError

    return (AttackError, CheckpointError, ConfigError, DataError, EvaluationError, ModelError,
            PNIError, TrainingError)


# --- argument types ------------------------------------------------------------------

def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


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
                 overwrite=args.overwrite)
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
    from .attacks.registry import DEFAULT_ATTACKS, attack_names

    parser.add_argument("checkpoint", help="checkpoint.pt written by `pni train`")
    parser.add_argument("--attacks", type=_parse_attacks, default=list(DEFAULT_ATTACKS),
                        help=f"comma-separated attacks among {', '.join(attack_names())} "
                             f"(default {','.join(DEFAULT_ATTACKS)})")
    parser.add_argument("--trials", type=int, default=5, help="trials with distinct seeds (paper: 5)")
    parser.add_argument("--n", type=int, default=None,
                        help="evaluate the first N test images (default: all)")
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
    from .evaluate import evaluate_checkpoint
    from .report import write_evaluation

    evaluation, label = evaluate_checkpoint(
        args.checkpoint, attacks=args.attacks, trials=args.trials, n=args.n, eps=args.eps,
        steps=args.steps, step_size=args.step_size, noise=args.noise == "both",
        dataset=args.dataset, data_dir=args.data_dir, split=args.split,
        batch_size=args.batch_size, seed=args.seed, device=args.device, progress=True)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    paths = write_evaluation(evaluation, out, label)
    print(paths["markdown"].read_text())
    print(f"written: {paths['json']}, {paths['markdown']}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except _user_errors() as error:
        print(f"pni {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pni {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
