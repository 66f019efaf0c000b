"""Checkpoints that know their model: atomic writes, rebuilding, clear load errors."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import create_model
from .noise import inject, injection_spec

FORMAT = "pni-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """An unreadable checkpoint, or one that does not fit the model; names the file."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never
    leaves a half-written file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def model_meta(model: nn.Module) -> dict[str, Any]:
    """What is needed to rebuild a registry model: arch, classes, width, channels,
    normalization and the PNI injection."""
    normalize = getattr(model, "normalize", None)
    stats = None
    if normalize is not None and hasattr(normalize, "mean"):
        stats = [normalize.mean.flatten().tolist(), normalize.std.flatten().tolist()]
    spec = injection_spec(model)
    return {
        "arch": getattr(model, "arch", None),
        "num_classes": getattr(model, "num_classes", None),
        "width": getattr(model, "width", 1.0),
        "input_shape": list(getattr(model, "input_shape", ()) or ()),
        "normalize": stats,
        "noise": spec.as_dict() if spec is not None else None,
    }


def build_from_meta(meta: dict[str, Any]) -> nn.Module:
    """Re-creates a model (with its noise, alphas at their initial value) from ``model_meta``."""
    if not meta.get("arch"):
        raise CheckpointError("the checkpoint holds a model that is not from pni.create_model; "
                              "build it yourself and pass model= to load it")
    in_channels = meta["input_shape"][0] if meta.get("input_shape") else None
    normalize = tuple(meta["normalize"]) if meta.get("normalize") else False
    model = create_model(meta["arch"], num_classes=meta["num_classes"] or 10,
                         width=meta.get("width", 1.0), in_channels=in_channels, normalize=normalize)
    noise = meta.get("noise")
    if noise:
        inject(model, noise["location"], noise["granularity"], noise["init_alpha"])
    return model


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a pni checkpoint file onto the CPU, with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a pni checkpoint (no '{FORMAT}' format tag)")
    return checkpoint


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict`` that reports every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit the model ({type(model).__name__}):"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state)


def load_model(path: str | os.PathLike, model: nn.Module | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuilds the checkpoint's model (or fills ``model``) and returns it with the checkpoint."""
    checkpoint = read_checkpoint(path)
    if model is None:
        model = build_from_meta(checkpoint.get("model_meta", {}))
    load_state(model, checkpoint["model"], source=f"checkpoint {str(path)!r}")
    return model.to(device), checkpoint
