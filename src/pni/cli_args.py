"""The ``pni`` command's argument vocabulary: one-line parser errors, value types (bool,
eps such as 8/255, devices, writable folders), the flags generated from ``TrainConfig``,
and the argument sets of ``pni eval`` and ``pni audit``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import PNIError

class UsageError(PNIError):
    """A bad command-line value found after parsing (an --out that cannot be written, ...)."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``pni <cmd>: error: ...`` (status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _parse_device(text: str) -> str:
    """A device this machine has: cpu, cuda, cuda:N or mps."""
    from .config import ConfigError, check_device

    try:
        check_device(text, "device")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _writable_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` when it is, or can become, a folder pni can write in; else a UsageError. Checked
    before the work starts, so that hours of evaluation are not lost at the end. Under
    torchrun only rank 0 writes, so only rank 0 checks."""
    path = Path(path)
    if os.environ.get("RANK", "0") != "0":
        return path
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {str(path)!r} lies inside a file ({str(existing)!r})")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(f"{flag} {str(path)!r} cannot be written ({str(existing)!r}: "
                         f"{error.strerror or error})") from None
    return path


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

def _parse_attacks(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of attack names")
    return names


def add_attack_flags(parser: argparse.ArgumentParser) -> None:
    """The flags the registered attacks declare (``AttackSpec.flags``), e.g. ``--eot``."""
    from .attacks.registry import attack_flags

    for flag in attack_flags():
        parser.add_argument(flag.flag, dest=flag.dest, type=flag.type, default=flag.default,
                            choices=flag.choices, help=flag.help)


def attack_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``build_attacks`` options the attack flags parsed into ``args`` set (a flag not
    given sets nothing)."""
    from .attacks.registry import attack_flags

    options: dict[str, Any] = {}
    for flag in attack_flags():
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        if flag.key is None:
            options[flag.option] = value
        else:
            options.setdefault(flag.option, {})[flag.key] = value
    return options


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from .attacks.registry import DEFAULT_VOTES, PROTOCOLS, attack_names

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
    add_attack_flags(parser)
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
    parser.add_argument("--batch-size", type=_positive_int, default=256, help="evaluation batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--device", type=_parse_device, default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", default=None,
                        help="folder for results.json and results.md (default: <checkpoint folder>/eval)")


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
    parser.add_argument("--device", type=_parse_device, default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--out", default=None,
                        help="folder for audit.json, audit.md and the figures "
                             "(default: <checkpoint folder>/audit)")


AUDIT_OVERRIDES = ("items", "steps", "step_size", "trials", "eps_values", "steps_values", "eot_ks",
                   "max_eot_drop", "random_samples", "random_n", "unbounded_steps", "surrogate_epochs",
                   "surrogate_train_n", "score_n", "score_queries", "batch_size", "seed")
