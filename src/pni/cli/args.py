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

from ..errors import PNIError

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
    from ..config import ConfigError, check_device

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


def _field_parser(cls: Any, field: dataclasses.Field | None = None) -> Callable[[str], Any]:
    """The argument type of a dataclass field, from its type hint: bool, int, float (eps
    fractions such as 8/255), str, int or float lists (comma-separated), optional values
    (``none``); ``metadata["parse"]`` ``"positive"`` (int >= 1) or ``"device"`` override.
    ``_field_parser(field)`` alone means a ``TrainConfig`` field."""
    if field is None:
        from ..config import TrainConfig
        cls, field = TrainConfig, cls
    named = {"positive": _positive_int, "device": _parse_device}
    if field.metadata.get("parse") in named:
        return named[field.metadata["parse"]]
    hint = typing.get_type_hints(cls)[field.name]
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    parser: Callable[[str], Any]
    if typing.get_origin(hint) in (list, tuple) or typing.get_origin(base) in (list, tuple):
        items = typing.get_args(base if typing.get_origin(base) else hint)
        parser = _parse_eps_list if float in items else _parse_int_list
    elif base is bool:
        parser = _parse_bool
    elif base is float:
        parser = _parse_eps
    elif base is int:
        parser = int
    else:
        parser = str
    return _parse_optional(parser) if optional else parser


def flag_fields(cls: type, exclude: tuple[str, ...] = ()) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are flags: all but ``exclude`` and those whose
    metadata says ``flag=False``."""
    return [f for f in dataclasses.fields(cls)
            if f.name not in exclude and f.metadata.get("flag", True)]


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, group_title: str | None = None,
                        exclude: tuple[str, ...] = (), *, dest_prefix: str = "",
                        default: Any = None, show_default: Callable[[Any], str] | None = repr,
                        ) -> list[str]:
    """One ``--field-name`` flag per field of dataclass ``cls`` (see ``flag_fields``), typed
    from the field's hint, its help from ``metadata["help"]`` followed by ``(default ...)``:
    ``metadata["default_text"]`` when the field states its default rule in words, else
    ``show_default(the field's default)`` (None: no default shown). A flag not given leaves
    ``dest_prefix + name`` at ``default`` (``argparse.SUPPRESS``: absent). Returns the
    field names."""
    group = parser.add_argument_group(group_title) if group_title else parser
    names = []
    for field in flag_fields(cls, exclude):
        text = field.metadata.get("help", field.name)
        if "default_text" in field.metadata:
            text += f" (default: {field.metadata['default_text']})"
        elif show_default is not None:
            text += f" (default {show_default(_default_of(field))})"
        group.add_argument("--" + field.name.replace("_", "-"), dest=dest_prefix + field.name,
                           type=_field_parser(cls, field), default=default,
                           metavar=field.name.upper(), help=text)
        names.append(field.name)
    return names


def flag_values(args: argparse.Namespace, names: list[str] | tuple[str, ...],
                dest_prefix: str = "") -> dict[str, Any]:
    """``{name: value}`` of the generated flags that were given (neither None nor absent)."""
    values = {name: getattr(args, dest_prefix + name, None) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from ..config import TrainConfig

    add_dataclass_flags(parser, TrainConfig, "training fields (override the preset)",
                        dest_prefix="cfg_", default=argparse.SUPPRESS)


# --- commands ------------------------------------------------------------------------

def _parse_attacks(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of attack names")
    return names


def add_attack_flags(parser: argparse.ArgumentParser) -> None:
    """The flags the registered attacks declare (``AttackSpec.flags``), e.g. ``--eot``."""
    from ..attacks.registry import attack_flags

    for flag in attack_flags():
        parser.add_argument(flag.flag, dest=flag.dest, type=flag.type, default=flag.default,
                            choices=flag.choices, help=flag.help)


def attack_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``build_attacks`` options the attack flags parsed into ``args`` set (a flag not
    given sets nothing)."""
    from ..attacks.registry import attack_flags

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
    from ..attacks.registry import DEFAULT_VOTES, PROTOCOLS, attack_names
    from ..evaluation.settings import EvalSettings

    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="checkpoint.pt written by `pni train` (or --model)")
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
    parser.add_argument("--n", "--num-images", dest="n", type=int, default=None,
                        help="evaluate a class-stratified sample of N test images (default: all); under torchrun "
                             "write --num-images (torchrun takes --n for its own --nnodes)")
    parser.add_argument("--noise", choices=("both", "off"), default="both",
                        help="both: test with and without PNI (Table 2); off: without only")
    add_dataclass_flags(parser, EvalSettings, "evaluation settings", show_default=_show_setting)
    parser.add_argument("--out", default=None,
                        help="folder for results.json and results.md (default: <checkpoint folder>/eval)")


def eval_settings_from_args(args: argparse.Namespace, **values: Any) -> Any:
    """The ``EvalSettings`` of ``pni eval``'s generated flags that were given, plus ``values``."""
    from ..evaluation.settings import EvalSettings

    given = flag_values(args, [f.name for f in flag_fields(EvalSettings)])
    return EvalSettings(**{**given, **values})


def _parse_eps_list(text: str) -> list[float]:
    """Comma-separated numbers or fractions such as 0,2/255,8/255."""
    values = [_parse_eps(p.strip()) for p in text.split(",") if p.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def _show_setting(value: Any) -> str:
    """A default as a flag would write it: 10,20,50 for a tuple."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    """``pni audit``'s arguments; one flag per ``AuditSettings`` field (help from its metadata)."""
    from ..auditing import AuditSettings

    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="checkpoint.pt written by `pni train` (or --model)")
    parser.add_argument("--eps", type=_parse_eps, default=None,
                        help="L-inf radius audited, e.g. 8/255 (default: the checkpoint's training eps)")
    parser.add_argument("--n", type=int, default=500, help="audit a class-stratified sample of N test images (default 500)")
    add_dataclass_flags(parser, AuditSettings, "audit settings", show_default=_show_setting)
    parser.add_argument("--surrogate", default=None,
                        help="item 2: checkpoint of the transfer attack's source model "
                             "(default: train one on the training split)")
    parser.add_argument("--no-surrogate", action="store_true",
                        help="item 2: do not train a surrogate (transfer attack not measured)")
    parser.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's)")
    parser.add_argument("--split", default="test", help="dataset split audited (default test)")
    parser.add_argument("--device", type=_parse_device, default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--out", default=None,
                        help="folder for audit.json, audit.md and the figures "
                             "(default: <checkpoint folder>/audit)")


def audit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``AuditSettings`` fields whose flags were given."""
    from ..auditing import AuditSettings

    return flag_values(args, [f.name for f in flag_fields(AuditSettings)])
