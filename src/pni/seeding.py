"""Every seed rule of pni (mix_seed, batch_seed, rank_seed), and capturing/restoring the
random state exactly.

A checkpoint stores the state as ByteTensors and plain lists, ints and floats only, so it
loads with ``torch.load(..., weights_only=True)``: numpy's state tuple and Python's become
lists. Imports nothing from pni but ``errors``.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch

from .errors import PNIError


class SeedingError(PNIError):
    """A random state that cannot be restored (a damaged or foreign one)."""


def mix_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers, stable across processes and platforms."""
    text = ",".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


def batch_seed(seed: int, start: int) -> int:
    """The seed of the batch that starts at sample ``start`` in a trial seeded ``seed``: a
    batch's randomness depends only on the trial and its position, never on which process
    runs it, so a sharded evaluation equals the single-process one exactly."""
    return int(seed) if start == 0 else mix_seed(seed, start)


def rank_seed(seed: int, rank_: int) -> int:
    """The seed of rank ``rank_``'s random stream (noise draws, PGD starts): ``seed`` itself
    on rank 0, so a single process is seeded as before, and a distinct mix elsewhere."""
    return int(seed) if rank_ == 0 else mix_seed(seed, rank_, 0x504E49)


def seed_everything(seed: int) -> None:
    """Seeds torch (CPU and every GPU), Python's ``random`` and numpy."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The random state; with ``device`` (one GPU per torchrun process) only that GPU's.

    Only ByteTensors and plain lists, ints and floats, so that checkpoints load with
    ``torch.load(..., weights_only=True)``: numpy's state tuple and Python's are stored as lists.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
             "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restores ``rng_state``'s random state; a malformed one raises SeedingError."""
    try:
        version, internal, gauss = state["python"]
        name, keys, pos, has_gauss, cached = state["numpy"]
        torch.set_rng_state(state["torch"])
        random.setstate((int(version), tuple(internal), gauss))
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss),
                             float(cached)))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise SeedingError(f"the random state cannot be restored: {error}") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)
