"""The ``pni`` command's argument vocabulary: one-line parser errors, value types (bool,
eps such as 8/255, devices, writable folders), the flags generated from ``TrainConfig``,
and the argument sets of ``pni eval`` and ``pni audit``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PNIError, did_you_mean

class UsageError(PNIError):
    """A bad command-line value found after parsing (an --out that cannot be written, ...)."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``pni <cmd>: error: ...`` (status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        import re

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:  # a mistyped command or choice: the closest one
            message += did_you_mean(choice[1], re.findall(r"'([^']*)'", choice[2]))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def unknown_flags_message(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """``unrecognized arguments: ...``, each mistyped ``--flag`` with the closest flag of
    ``parser`` (the sub-command's parser)."""
    flags = [o for o in parser._option_string_actions if o.startswith("--")]
    words = [f"{u}{did_you_mean(u.split('=')[0], flags)}" if u.startswith("--") else u for u in unknown]
    return f"unrecognized arguments: {' '.join(words)}"


# --- deprecated spellings --------------------------------------------------------------

class _DeprecatedFlag(argparse.Action):
    """An old spelling of a flag, kept for one version: stores into the new flag's ``dest``
    and prints one warning line naming the new spelling."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import sys

        print(f"{parser.prog}: warning: {option_string} is deprecated and goes away in the next version; "
              f"write {self.new}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def add_num_images_flag(parser: argparse.ArgumentParser, help: str, *, dest: str = "n",  # noqa: A002
                        default: int | None = None, old: str = "--n",
                        type: Callable[[str], Any] = int) -> None:  # noqa: A002
    """``--num-images N`` (the one spelling of "how many test images" in every command), with
    the command's old spelling ``old`` kept as a deprecated alias."""
    parser.add_argument("--num-images", dest=dest, type=type, default=default, metavar="N", help=help)
    add_deprecated_flag(parser, old, "--num-images", dest, type)


def add_deprecated_flag(parser: argparse.ArgumentParser, old: str, new: str, dest: str,
                        type: Callable[[str], Any] | None = None) -> None:  # noqa: A002
    """``old`` as a hidden, warning alias of the flag ``new`` (whose value lives in ``dest``)."""
    parser.add_argument(old, dest=dest, type=type, default=argparse.SUPPRESS, action=_DeprecatedFlag,
                        new=new, help=argparse.SUPPRESS)


# --- argument types ------------------------------------------------------------------

def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def positive_minutes(text: str) -> float:
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parse_device(text: str) -> str:
    """A device this machine has: cpu, cuda, cuda:N or mps."""
    from ..config import ConfigError, check_device

    try:
        check_device(text, "device")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def writable_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
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
    named = {"positive": positive_int, "device": parse_device}
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
                        shown: dict[str, Any] | None = None) -> list[str]:
    """One ``--field-name`` flag per field of dataclass ``cls`` (see ``flag_fields``), typed
    from the field's hint, its help from ``metadata["help"]`` followed by ``(default ...)``:
    ``metadata["default_text"]`` when the field states its default rule in words, else
    ``show_default(the field's default)`` (None: no default shown). A flag not given leaves
    ``dest_prefix + name`` at ``default`` (``argparse.SUPPRESS``: absent). ``shown``: the
    defaults to show instead of the fields' own (a preset's values). Returns the field names."""
    group = parser.add_argument_group(group_title) if group_title else parser
    names = []
    for field in flag_fields(cls, exclude):
        text = field.metadata.get("help", field.name)
        if "default_text" in field.metadata:
            text += f" (default: {field.metadata['default_text']})"
        elif show_default is not None:
            value = shown[field.name] if shown is not None and field.name in shown else _default_of(field)
            text += f" (default {show_default(value)})"
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


def add_config_flags(parser: argparse.ArgumentParser, preset: str = "cifar-resnet20",
                      scale: str = "cpu") -> None:
    """The ``TrainConfig`` flags of ``pni train``, their help showing ``preset``'s values at
    ``scale`` (the preset and scale on the command line; an unknown one: the fields' own)."""
    from ..config import TrainConfig, load_config

    try:
        shown: dict[str, Any] | None = load_config(preset, scale).to_dict()
        title = f"training fields (override the preset; defaults shown: {preset} at {scale} scale)"
    except PNIError:
        shown, title = None, "training fields (override the preset)"
    add_dataclass_flags(parser, TrainConfig, title, dest_prefix="cfg_", default=argparse.SUPPRESS, shown=shown)


def peek_option(argv: list[str], name: str) -> str | None:
    """The value of option ``name`` in ``argv`` (``--name V`` or ``--name=V``), before parsing."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --- commands ------------------------------------------------------------------------

def _parse_attacks(text: str) -> list[str]:
    """Comma-separated registered attack names; a mistyped one is refused here, at parsing
    (before any time estimate), with the closest name."""
    from ..attacks.registry import attack_names

    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of attack names")
    known = attack_names()
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(f"unknown attack {name!r}{did_you_mean(name, known)}; "
                                             f"expected among: {', '.join(known)}")
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
    from ..attacks.registry import DEFAULT_VOTES, attack_names
    from ..evaluation.protocols import EVAL_ATTACKS as PROTOCOLS
    from ..evaluation.settings import EvalSettings

    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="checkpoint.pt written by `pni train` (or --model)")
    parser.add_argument("--attacks", type=_parse_attacks, default=None,
                        help=f"comma-separated attacks among {', '.join(attack_names())} "
                             f"(default: the protocol's)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="honest",
                        help=f"honest (default): {','.join(PROTOCOLS['honest'])}, predictions judged over "
                             f"--votes noise draws, EOT-PGD and AA-rand cascaded as AutoAttack does (each on the "
                             f"images still robust), plus the per-sample worst case over the attacks; "
                             f"paper: the paper's {','.join(PROTOCOLS['paper'])}, one pass each")
    parser.add_argument("--votes", type=int, default=None,
                        help=f"noise draws each prediction is judged over: expected and majority-vote "
                             f"accuracy (default {DEFAULT_VOTES}; 1 with --protocol paper)")
    add_attack_flags(parser)
    add_num_images_flag(parser, "evaluate a class-stratified sample of N test images (default: all)")
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
    add_num_images_flag(parser, "audit a class-stratified sample of N test images (default 500)", default=500)
    add_dataclass_flags(parser, AuditSettings, "audit settings", show_default=_show_setting)
    parser.add_argument("--surrogate", default=None,
                        help="item 2: checkpoint of the transfer attack's source model "
                             "(default: train one on the training split)")
    parser.add_argument("--no-surrogate", action="store_true",
                        help="item 2: do not train a surrogate (transfer attack not measured)")
    parser.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: the checkpoint's)")
    parser.add_argument("--split", default="test", help="dataset split audited (default test)")
    parser.add_argument("--device", type=parse_device, default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--out", default=None,
                        help="folder for audit.json, audit.md and the figures "
                             "(default: <checkpoint folder>/audit)")


def audit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``AuditSettings`` fields whose flags were given."""
    from ..auditing import AuditSettings

    return flag_values(args, [f.name for f in flag_fields(AuditSettings)])


@contextmanager
def resumable(out: Path, command: str, enabled: bool = True) -> Iterator[str | None]:
    """The partial file of a long evaluation in ``out`` (``pni.evaluation.resume``), or None
    when not ``enabled``: says when a run resumes from it, on Ctrl-C that it was kept, and
    deletes it when the block ends normally (the results are written by then)."""
    from ..runs import PARTIAL_EVALUATION

    if not enabled:
        yield None
        return
    partial = Path(out) / PARTIAL_EVALUATION
    if partial.exists():
        print(f"{command}: resuming: the attacks and batches finished before a stop are reused from {partial} "
              f"(when the settings are the same)", file=sys.stderr)
    try:
        yield str(partial)
    except KeyboardInterrupt:
        if partial.exists():
            from ..evaluation.partial import partial_evaluation

            print(f"{command}: the attacks and batches finished so far are kept in {partial}: the same command resumes",
                  file=sys.stderr)
            found = partial_evaluation(partial)
            if found is not None:
                print(f"{command}: {found.line()}", file=sys.stderr)
        raise
    partial.unlink(missing_ok=True)
