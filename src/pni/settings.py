"""Dataclass fields that carry their own help text (``metadata={"help": ...}``), the one
settings style of pni: ``TrainConfig``, ``AuditSettings`` and ``EvalSettings`` declare each
knob once, and ``pni.cli.args.add_dataclass_flags`` turns the fields into flags; and the one
integer / fraction check every setting uses (``is_int``, ``is_fraction``, ``check_int``,
``check_fraction``)."""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002
           factory: Callable[[], Any] | None = None, **metadata: Any) -> Any:
    """A dataclass field with ``help`` (and any other flag metadata) on it."""
    meta = {"help": help, **metadata}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_help(cls: type) -> dict[str, str]:
    """``{field name: help}`` of a dataclass whose fields carry help metadata."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if f.metadata.get("help")}


# --- the one integer / fraction check -------------------------------------------------------

def is_int(value: Any, minimum: int | None = None, maximum: int | None = None) -> bool:
    """True for an integer (Python's or numpy's, never a bool) within the bounds given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def is_fraction(value: Any, low_open: bool = True) -> bool:
    """True for a finite real number (never a bool) in (0, 1], or [0, 1] with ``low_open`` False."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return False
    return (value > 0 if low_open else value >= 0) and value <= 1


def check_int(value: Any, name: str, minimum: int = 1, error: type[Exception] = ValueError) -> int:
    """``value`` as an int, or ``error("<name> must be an integer >= <minimum>, got <value>")``."""
    if not is_int(value, minimum):
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(value: Any, name: str, low_open: bool = True, error: type[Exception] = ValueError) -> float:
    """``value`` as a float, or ``error("<name> must be a number in (0, 1], got <value>")``."""
    if not is_fraction(value, low_open):
        raise error(f"{name} must be a number in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return float(value)
