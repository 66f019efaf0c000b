"""Dataclass fields that carry their own help text (``metadata={"help": ...}``), the one
settings style of pni: ``TrainConfig``, ``AuditSettings`` and ``EvalSettings`` declare each
knob once, and ``pni.cli.args.add_dataclass_flags`` turns the fields into flags."""
from __future__ import annotations

import dataclasses
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
