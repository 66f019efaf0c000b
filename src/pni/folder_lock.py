"""One writer per folder: an advisory lock on ``<folder>/.running`` (``fcntl.flock``) held
while a process writes there. ``pni train`` holds its ``--out`` folder's lock for the whole
run (a second ``pni train`` on the same folder refuses, naming the holder's pid), and
``pni reproduce`` holds each step folder's lock while it runs the step, so several
``pni reproduce`` processes can share one results folder side by side (one per core): each
takes the next step nobody holds and waits for a held one it needs. The operating system
drops the lock when its process ends, killed or not: a stopped run leaves no stale lock.

Within one process the lock is re-entrant: ``pni reproduce`` holds a training step's folder
and the training run it starts there takes the same lock again (a second ``flock`` of the
same file from the same process would otherwise refuse it). Where ``fcntl`` is missing
(Windows) every lock is granted: run one process per folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".running"

# the locks this process holds: lock file -> [open handle (holds the flock), holders]
_HELD: dict[Path, list] = {}


class FolderLock:
    """The lock of one folder; ``acquire()`` never blocks."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(os.path.abspath(Path(folder) / LOCK_FILE))
        self._held = False

    def acquire(self, record: bool = True) -> bool:
        """Takes the lock and (``record``) writes this process's pid into it; False when
        another process holds it (True again when this process already does)."""
        if self._held:
            return True
        if self.path in _HELD:
            _HELD[self.path][1] += 1
            self._held = True
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = open(self.path, "a+")  # noqa: SIM115 - held open while the lock is held
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
        if record:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        _HELD[self.path] = [handle, 1]
        self._held = True
        return True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        entry = _HELD.get(self.path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _HELD[self.path]
            entry[0].close()  # closing drops the flock

    def holder(self) -> str:
        """The pid the lock file records (its last holder), for messages."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"


def held_elsewhere(folder: str | os.PathLike) -> bool:
    """Whether another process holds ``folder``'s lock right now."""
    lock = FolderLock(folder)
    if not lock.path.exists():
        return False
    if lock.acquire(record=False):
        lock.release()
        return False
    return True
