"""SIGTERM and SIGINT during training: a flag the trainer checks after each batch (it then
writes a checkpoint and stops), and the shell's exit status for a signal."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopRequest:
    """Set by SIGTERM or SIGINT (what Slurm, Kubernetes, torchrun and Ctrl-C send): the
    trainer finishes the batch, writes a checkpoint and stops. A second signal acts as if
    pni had not caught the first (default handling: the process ends at once)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        for sig, handler in self._previous.items():  # the next signal is not caught
            signal.signal(sig, handler)

    @contextmanager
    def installed(self, active: bool = True) -> Iterator[StopRequest]:
        """Catches SIGTERM and SIGINT inside (main thread only; elsewhere a no-op)."""
        if active and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous.clear()


def exit_code(signum: int) -> int:
    """The shell's exit status for a process ended by ``signum`` (143 SIGTERM, 130 SIGINT)."""
    return 128 + int(signum)
