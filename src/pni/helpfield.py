"""Dataclass fields that carry their own help text (``metadata={"help": ...}``), the one
settings style of pni: ``TrainConfig``, ``AuditSettings`` and ``EvalSettings`` declare each
knob once, and ``cli_args.add_dataclass_flags`` turns the fields into flags."""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002
           factory: Callable[[], Any] | None = None, **metadata: Any) -> Any:
    """A dataclass field with ``help`` (and any other flag metadata) on it."""
    meta = {"help": help, **metadata}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def renamed(old: str, new: str, old_value: Any, new_value: Any, where: str) -> Any:
    """``new_value``, or ``old_value`` (with a DeprecationWarning) when only the old keyword
    ``old`` was given; ``votes`` is the one name for the noise draws a prediction is judged over."""
    if old_value is None:
        return new_value
    warnings.warn(f"{where}: {old}= is deprecated, write {new}=", DeprecationWarning, stacklevel=3)
    if new_value is not None:
        raise TypeError(f"{where}: give {new}= only, not both {new}= and {old}=")
    return old_value


def field_help(cls: type) -> dict[str, str]:
    """``{field name: help}`` of a dataclass whose fields carry help metadata."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if f.metadata.get("help")}
