"""A model from a checkpoint file: what a checkpoint records of its model (``model_meta``),
rebuilding it (``build_from_meta``), ``load_model(path)`` and a label for reports."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_state, read_checkpoint
from ..errors import PNIError
from ..noise import inject, injection_spec
from .registry import create_model


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



def load_model(path: str | os.PathLike, model: nn.Module | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuilds the checkpoint's model (or fills ``model``) and returns it with the checkpoint."""
    checkpoint = read_checkpoint(path)
    source = f"checkpoint {str(path)!r}"
    if model is None:
        try:
            model = build_from_meta(checkpoint.get("model_meta") or {})
        except PNIError as error:  # a checkpoint, model or noise error, one line
            raise CheckpointError(f"{source}: cannot rebuild its model: {error}") from None
    load_state(model, checkpoint["model"], source=source)
    return model.to(device), checkpoint


def model_label(checkpoint: dict[str, Any]) -> str:
    """``"resnet20 (PNI-W)"`` or ``"resnet20 (no noise)"``: a checkpoint's model, for reports."""
    meta = checkpoint.get("model_meta") or {}
    location = (meta.get("noise") or {}).get("location")
    return f"{meta.get('arch', 'model')} ({'PNI-' + location if location else 'no noise'})"
