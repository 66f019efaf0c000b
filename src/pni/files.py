"""Files pni writes and reads: atomic writes (a temporary file in the same folder, fsync,
rename, fsync of the folder, so a kill leaves the old file or the new one, never half of
one), the one JSON writer of every result file, and the lenient JSON / JSON-lines readers
(a missing or unreadable file reads as "nothing there"), and a file's sha256."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from .errors import PNIError


class WriteError(PNIError, OSError):
    """A file that cannot be written (disk full, no permission); names what and the file."""


def temp_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files ``atomic_write(..., path)`` writes before its rename (left over
    only by a killed process)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def atomic_write(data: bytes | memoryview, path: str | os.PathLike, what: str = "file",
                 midway: Callable[[], None] | None = None,
                 error: type[PNIError] = WriteError) -> Path:
    """Writes ``data`` to ``path`` through a temporary file, fsync, rename and fsync of the
    folder; creates the folder. An OS error raises ``error`` (one line naming ``what`` and
    the file) and leaves no temporary file. ``midway`` runs when half of the bytes are
    written (a fault-injection point for tests; see ``pni.training.run_folder``)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temp(path)
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2 if midway is not None else len(data)
            f.write(data[:half])
            if midway is not None:
                f.flush()
                midway()
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as cause:
        raise error(f"cannot write {what} {str(path)!r}: {cause.strerror or cause}") from cause
    finally:
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink()
    _fsync_folder(path.parent)
    return path


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new, exclusive ``.<name>.<random>.tmp`` next to ``path``, mode 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable, where the OS lets a folder be opened (not Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is done
    finally:
        os.close(fd)


# --- JSON ----------------------------------------------------------------------------------

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
    """Writes ``obj`` as indented JSON to ``path``, atomically; an unwritable file raises
    ``WriteError`` naming ``what`` and the file. Every JSON file pni writes goes through here
    (``results.json``, ``transfer.json``, ``audit.json``, ``certify.json``, ``step.json``, cards)."""
    return atomic_write(json_text(obj).encode(), path, what=what)


def write_text(text: str, path: str | os.PathLike, what: str = "report") -> Path:
    """A Markdown report (or any text) written as atomically as ``write_json``."""
    return atomic_write(text.encode(), path, what=what)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's value; None when the file is missing or does not parse (lenient: for
    files that may be absent or half-made, such as another process's results)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The records of a JSON-lines file, blank lines skipped; empty when the file is missing
    or a line does not parse (lenient, as ``read_json``)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return []


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, hex (read in 1 MiB blocks: checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
