"""The ``pni`` command's CPU thread policy (imports only ``pni.errors``, and torch only inside
functions: ``pni/__init__`` calls ``cli_wait_policy`` before torch is imported).

On a machine shared with other busy processes, torch's default (one OpenMP thread per core,
*spinning* while it waits for work) loses badly: its threads burn the cores the other
processes need, and each parallel region waits for the thread that was descheduled. Measured
side by side (``benchmarks/threads.py``, LeNet-5 PNI-W training, 2 cores): with one and three
competing busy processes, torch's default took 9-11x the time of the best fixed choice,
while one thread per core with a *passive* wait policy stayed within 1.2x of the best fixed
choice quiet and under load (better than one thread under heavy load: it gets a larger
share of the cores). The command therefore

- sets ``OMP_WAIT_POLICY=PASSIVE`` before torch starts (threads sleep instead of spinning
  between parallel regions; only where the variable is unset: yours wins);
- runs ``--threads N`` / ``$PNI_THREADS`` threads when given (``auto`` or 0: the default),
  else torch's own count ($OMP_NUM_THREADS if set, else one per physical core; within the cores
  this process may use).
  A cap by the load seen at start (cores less the other running processes) was measured
  too and lost: one thread under load ran up to 1.8x slower than one per core, passive.

Library users keep torch's defaults (``torch.set_num_threads`` is theirs to call).
Checkpoints are byte-identical across runs only with the same thread count (the order of
floating-point reductions depends on it).
"""
from __future__ import annotations

import os
import sys
from .errors import PNIError

ENV = "PNI_THREADS"
WAIT_ENV = "OMP_WAIT_POLICY"


class ThreadsError(PNIError):
    """A ``--threads`` / ``$PNI_THREADS`` value that is not a positive integer or ``auto``."""


def is_pni_command(argv: list[str] | None = None) -> bool:
    """Whether this process is the ``pni`` command (the console script, ``python -m pni`` or
    ``torchrun -m pni``), judged from the interpreter's original command line."""
    orig = list(argv if argv is not None else getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    if "-m" in orig[:-1]:
        return orig[orig.index("-m") + 1] in ("pni", "pni.cli", "pni.__main__")
    script = os.path.basename(orig[1]) if len(orig) > 1 else ""
    return script in ("pni", "pni.exe", "pni-script.py")


def cli_wait_policy(environ: dict[str, str] | None = None, argv: list[str] | None = None) -> bool:
    """Sets ``OMP_WAIT_POLICY=PASSIVE`` for the ``pni`` command when torch is not imported yet
    and the variable is unset; returns whether it did."""
    environ = os.environ if environ is None else environ
    if "torch" in sys.modules or WAIT_ENV in environ or not is_pni_command(argv):
        return False
    environ[WAIT_ENV] = "PASSIVE"
    return True


def parse_threads(value: str | int | None) -> int | None:
    """``None``, ``""``, ``"auto"`` or 0: the automatic choice (None); else a positive int."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "auto", "0"):
        return None
    try:
        number = int(text)
    except ValueError:
        raise ThreadsError(f"threads must be a positive integer or 'auto', got {value!r}") from None
    if number < 0:
        raise ThreadsError(f"threads must be a positive integer or 'auto', got {value!r}")
    return number


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_threads(cores: int | None = None, default: int | None = None) -> int:
    """torch's default thread count (``default``; measured when None), at most ``cores``
    (default: the cores this process may use), at least 1."""
    if default is None:
        import torch

        default = torch.get_num_threads()
    cores = usable_cores() if cores is None else cores
    return max(1, min(cores, default))


def choose_threads(flag: str | int | None = None, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """(threads, why): ``flag`` (``--threads``), else ``$PNI_THREADS``, else ``auto_threads()``."""
    environ = os.environ if environ is None else environ
    for value, source in ((flag, "--threads"), (environ.get(ENV), f"${ENV}")):
        number = parse_threads(value)
        if number is not None:
            return number, source
    return auto_threads(), "auto"


def apply_threads(flag: str | int | None = None) -> tuple[int, str]:
    """Sets torch's intra-op threads by ``choose_threads``; returns (threads, why)."""
    import torch

    threads, why = choose_threads(flag)
    torch.set_num_threads(threads)
    return threads, why
