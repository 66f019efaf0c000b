"""`pni train` in a subprocess that crashes or is signalled at a chosen point (for
tests/test_robustness.py).

    python tests/_run_worker.py crash <fault point>@<n> train ...   # os._exit at the n-th call
    python tests/_run_worker.py SIGTERM <epoch>,<batch> train ...   # the signal before that batch
"""
from __future__ import annotations

import os
import signal
import sys

import torch

import pni.training.trainer
from pni.cli import app as cli
from pni.training import run_folder as runfolder


def crash_at(target: str) -> None:
    """``runfolder.fault_point`` ends the process (no cleanup, like SIGKILL) at its n-th call."""
    name, count = target.split("@")
    seen: dict[str, int] = {}

    def fault_point(point: str) -> None:
        seen[point] = seen.get(point, 0) + 1
        if point == name and seen[point] == int(count):
            os._exit(3)

    runfolder.fault_point = fault_point


def signal_at(signum: int, target: str) -> None:
    """The process sends itself ``signum`` just before batch ``batch`` of epoch ``epoch``."""
    epoch, batch = map(int, target.split(","))
    real = pni.training.trainer.fit

    def fit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def callback(net, e, b):  # noqa: ANN001, ANN202
            if (e, b) == (epoch, batch):
                os.kill(os.getpid(), signum)
        return real(*args, step_callback=callback, **kwargs)

    pni.training.trainer.fit = fit


def main() -> int:
    torch.set_num_threads(1)
    mode, target, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "crash":
        crash_at(target)
    else:
        signal_at(getattr(signal, mode), target)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
