"""The checkpoint file: its format, safe loading, atomic saving, checks, one-line errors
(rebuilding the model a checkpoint describes: ``pni.models.load_model``).

Loading uses ``torch.load(..., weights_only=True)``: a checkpoint may hold tensors, numbers,
strings, lists, tuples and dicts only (random states included, see ``train._rng_state``), so a
file crafted to run code when unpickled is refused before anything runs. Every entry pni
reads is checked for its type, so a damaged or foreign file gives one line naming the file
instead of a traceback further down.
"""
from __future__ import annotations

import io
import math
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError, check_types
from .errors import PNIError
from .files import atomic_write

FORMAT = "pni-checkpoint"
VERSION = 1
RESUME_KEYS: tuple[str, ...] = ("epoch", "optimizer", "scheduler", "rng")  # needed to resume training


class CheckpointError(PNIError):
    """A checkpoint that cannot be read, trusted, written or fitted to the model; names the file."""


# --- writing -----------------------------------------------------------------------------

def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through ``pni.files.atomic_write`` (temporary file, fsync, rename, fsync
    of the folder): a crash never leaves a half-written file under ``path``.

    The file's mode follows the umask (like any file the user creates). An OS error (disk
    full, no permission) raises a one-line CheckpointError and leaves no temporary file.
    ``obj`` is serialized in memory first: torch's zip writer turns a failed write into an
    unrelated RuntimeError, a plain write keeps the OS error.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(buffer.getbuffer(), path, what="checkpoint", error=CheckpointError)


# --- reading -----------------------------------------------------------------------------

def read_checkpoint(path: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Loads a pni checkpoint onto the CPU, weights only (a file that would run code is
    refused), and checks its entries; ``resume`` also requires the training state
    (``RESUME_KEYS``). Every error is one line naming the file."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name!r} "
                              f"{'is a folder, not a file' if path.is_dir() else 'does not exist'}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _unpickling_error(name, error) from None
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {name!r}: {_first_line(error)}") from None
    check_checkpoint(checkpoint, name, resume)
    return checkpoint


def _first_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if ln.strip()]
    return lines[0] if lines else type(error).__name__


def _unpickling_error(name: str, error: pickle.UnpicklingError) -> CheckpointError:
    """One line for a file the weights-only unpickler refused."""
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return CheckpointError(
            f"refusing to load checkpoint {name!r}: it refers to {found.group(1)}, which is not "
            f"plain data (loading it could run code); pni checkpoints hold only tensors, numbers, "
            f"strings, lists and dicts")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text, re.DOTALL)
    reason = _first_line(ValueError(detail.group(1))) if detail else _first_line(error)
    return CheckpointError(f"cannot read checkpoint {name!r}: not a checkpoint of tensors and "
                           f"plain data ({reason})")


# --- checking the entries ----------------------------------------------------------------

Rule = tuple[Callable[[Any], bool], str]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_list_of(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (list, tuple)) and all(map(test, value))


def _is_state_dict(value: Any) -> bool:
    return (isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
            and all(isinstance(v, torch.Tensor) for v in value.values()))


def _is_optimizer_state(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("state"), dict)
            and isinstance(value.get("param_groups"), list))


def _is_rng_state(value: Any) -> bool:
    """The form ``train._rng_state`` writes: a ByteTensor for torch, plain lists for the rest."""
    return (isinstance(value, dict) and isinstance(value.get("torch"), torch.Tensor)
            and isinstance(value.get("python"), (list, tuple))
            and isinstance(value.get("numpy"), (list, tuple))
            and _is_list_of(lambda t: isinstance(t, torch.Tensor))(value.get("cuda", []))
            and isinstance(value.get("cuda_device", torch.empty(0)), torch.Tensor))


def _is_position(value: Any) -> bool:
    """The form ``Trainer.position`` writes for a mid-epoch checkpoint."""
    return (isinstance(value, dict) and _is_int(value.get("batch")) and value["batch"] >= 0
            and _is_int(value.get("count")) and isinstance(value.get("order"), torch.Tensor)
            and _is_state_dict(value.get("sums")) and _is_number(value.get("seconds")))


def _is_optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or test(value)


ENTRY_RULES: dict[str, Rule] = {
    "version": (_is_int, "an integer"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "model": (_is_state_dict, "a state dict (names -> tensors)"),
    "model_meta": (lambda v: isinstance(v, dict), "a dict"),
    "optimizer": (_is_optimizer_state, "an optimizer state dict"),
    "scheduler": (lambda v: isinstance(v, dict), "a scheduler state dict"),
    "rng": (_is_rng_state, "a random state (torch tensor, python and numpy lists)"),
    "rng_ranks": (_is_list_of(_is_rng_state), "a list of random states"),
    "world_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "config": (lambda v: isinstance(v, dict), "a dict of config fields"),
    "dataset": (lambda v: isinstance(v, str), "a string"),
    "metrics": (lambda v: isinstance(v, dict), "a dict"),
    "position": (_is_position, "a mid-epoch position (batch, count, order, sums, seconds)"),
    "position_ranks": (_is_list_of(_is_position), "a list of mid-epoch positions"),
}

MAX_CLASSES, MAX_WIDTH, MAX_INPUT_SIDE = 100_000, 64, 4096   # model_meta ranges

META_RULES: dict[str, Rule] = {
    "arch": (_is_optional(lambda v: isinstance(v, str)), "a model name"),
    # ranges checked before the model is built: 10**9 classes would ask the allocator for 100s of GB
    "num_classes": (_is_optional(lambda v: _is_int(v) and 1 <= v <= MAX_CLASSES),
                    f"an integer in [1, {MAX_CLASSES}]"),
    "width": (lambda v: _is_number(v) and 0 < v <= MAX_WIDTH, f"a number in (0, {MAX_WIDTH}] (a width multiplier)"),
    "input_shape": (lambda v: _is_list_of(lambda d: _is_int(d) and 1 <= d <= MAX_INPUT_SIDE)(v) and len(v) <= 3,
                    f"a list of integers (at most 3, each in [1, {MAX_INPUT_SIDE}])"),
    "normalize": (_is_optional(lambda v: _is_list_of(_is_list_of(_is_number))(v) and len(v) == 2),
                  "[mean, std] lists of numbers"),
    "noise": (_is_optional(lambda v: isinstance(v, dict)), "a dict"),
}

NOISE_RULES: dict[str, Rule] = {
    "location": (lambda v: isinstance(v, str), "a string"),
    "granularity": (lambda v: isinstance(v, str), "a string"),
    "init_alpha": (_is_number, "a number"),
}


def _check_entries(values: Mapping[str, Any], rules: Mapping[str, Rule], where: str,
                   required: tuple[str, ...] = ()) -> None:
    missing = [key for key in required if key not in values]
    if missing:
        raise CheckpointError(f"{where} has no {', '.join(map(repr, missing))} entry")
    for key, (test, expected) in rules.items():
        if key in values and not test(values[key]):
            value = values[key]
            got = repr(value) if isinstance(value, (int, float)) else type(value).__name__
            raise CheckpointError(f"{where}: entry {key!r} is not {expected} (got {got})")


def check_checkpoint(checkpoint: Any, name: str, resume: bool = False) -> None:
    """Raises a one-line CheckpointError naming ``name`` unless ``checkpoint`` is a pni
    checkpoint whose entries have the expected types (``resume``: with the training state)."""
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{name!r} is not a pni checkpoint (no '{FORMAT}' format tag)")
    where = f"checkpoint {name!r}"
    _check_entries(checkpoint, ENTRY_RULES, where, ("model", *RESUME_KEYS) if resume else ("model",))
    meta = checkpoint.get("model_meta") or {}
    _check_entries(meta, META_RULES, f"{where} model_meta")
    _check_entries(meta.get("noise") or {}, NOISE_RULES, f"{where} model_meta noise",
                   tuple(NOISE_RULES) if meta.get("noise") else ())
    try:
        check_types(checkpoint.get("config", {}), allow_unknown=True)
    except ConfigError as error:
        raise CheckpointError(f"{where}: {error}") from None


# --- loading into a model ----------------------------------------------------------------

def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict`` that reports every missing, unexpected and mis-shaped key, in one line."""
    if not _is_state_dict(state):
        raise CheckpointError(f"{source}: the model state is not a dict of names -> tensors")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    parts = [f"{title}: {_shown(keys)}" for title, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
             if keys]
    if parts:
        raise CheckpointError(f"{source} does not fit the model ({type(model).__name__}): "
                              + "; ".join(parts))
    model.load_state_dict(state)
