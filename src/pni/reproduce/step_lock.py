"""One process at a time per step: ``pni reproduce`` holds an advisory lock on a step's
folder (``<out>/<key>/.running``, ``fcntl.flock``) while it runs the step, so several
``pni reproduce`` processes can share one results folder side by side (one per core): each
takes the next step nobody holds and waits for a held one it needs. The operating system
drops the lock when its process ends, killed or not: a stopped run leaves no stale lock.
Where ``fcntl`` is missing (Windows) every lock is granted: run one process per folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".running"


class StepLock:
    """The lock of one step folder; ``acquire()`` never blocks."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self, record: bool = True) -> bool:
        """Takes the lock and (``record``) writes this process's pid into it; False when
        another process holds it."""
        if self._handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open while the step runs
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
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None

    def holder(self) -> str:
        """The pid the lock file records (its last holder), for messages."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"


def held_elsewhere(folder: Path) -> bool:
    """Whether another process holds ``folder``'s lock right now."""
    lock = StepLock(folder)
    if not lock.path.exists():
        return False
    if lock.acquire(record=False):
        lock.release()
        return False
    return True
