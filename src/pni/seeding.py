"""Every seed rule of a training run, and capturing/restoring the random state exactly.

A checkpoint stores the state as ByteTensors and plain lists, ints and floats only, so it
loads with ``torch.load(..., weights_only=True)``: numpy's state tuple and Python's become
lists. Imports nothing from pni at module level.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


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
    """Restores ``rng_state``'s random state; a malformed one raises CheckpointError."""
    try:
        version, internal, gauss = state["python"]
        name, keys, pos, has_gauss, cached = state["numpy"]
        torch.set_rng_state(state["torch"])
        random.setstate((int(version), tuple(internal), gauss))
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss),
                             float(cached)))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        from .checkpoint import CheckpointError

        raise CheckpointError(f"the checkpoint's random state cannot be restored: {error}") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)
