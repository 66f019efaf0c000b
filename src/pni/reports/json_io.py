"""The one writer of pni's JSON result files (``results.json``, ``transfer.json``,
``audit.json``, ``certify.json``, a reproduce step's ``step.json``, figures' data):
indented JSON written atomically by ``pni.checkpoint.atomic_write`` (a temporary file in
the same folder, fsync, rename, fsync of the folder), so a kill leaves the old file or
the new one, never half of one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write


def json_default(value: Any) -> Any:
    """Tensors and arrays as lists, paths as strings; anything else is an error."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def json_text(obj: Any) -> str:
    """``obj`` as the text ``write_json`` writes (indented, one final newline)."""
    return json.dumps(obj, indent=2, default=json_default) + "\n"


def write_json(obj: Any, path: str | os.PathLike, what: str = "results file") -> Path:
    """Writes ``obj`` as indented JSON to ``path``, atomically; creates the folder. An
    unwritable file raises ``pni.checkpoint.CheckpointError`` naming ``what`` and the file."""
    return atomic_write(json_text(obj).encode(), path, what=what)


def write_text(text: str, path: str | os.PathLike, what: str = "report") -> Path:
    """A Markdown report (or any text) written as atomically as ``write_json``."""
    return atomic_write(text.encode(), path, what=what)
