"""Opening a trained run: a ``pni train`` checkpoint with its model, its own dataset, its
training attack settings and a label; the rules every command shares (eval, audit,
transfer, certify, reproduce) in one place."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .data import Dataset, at_most, load_dataset

PAPER_PGD_STEPS_MNIST = 40   # Sec. 4.1: MNIST-like data (1x28x28)
PAPER_PGD_STEPS = 7          # Sec. 4.1: CIFAR-10


def paper_pgd_steps(image_shape: tuple[int, ...]) -> int:
    """The paper's PGD steps for data of this shape: 40 for 1x28x28 (MNIST), 7 otherwise."""
    return PAPER_PGD_STEPS_MNIST if tuple(image_shape) == (1, 28, 28) else PAPER_PGD_STEPS


def madry_step_size(eps: float, steps: int) -> float:
    """The step size ``2.5 * eps / steps`` (Madry et al. 2018): enough to cross the eps-ball
    from any start; ``eps`` itself for a single step."""
    return 2.5 * eps / steps if steps else eps


def model_label(checkpoint: dict[str, Any]) -> str:
    """``"resnet20 (PNI-W)"`` or ``"resnet20 (no noise)"``: a checkpoint's model, for reports."""
    meta = checkpoint.get("model_meta") or {}
    location = (meta.get("noise") or {}).get("location")
    return f"{meta.get('arch', 'model')} ({'PNI-' + location if location else 'no noise'})"


@dataclass
class OpenedRun:
    """A checkpoint opened on its own data: the model (on ``device``), the checkpoint, the
    data (a class-stratified sample when ``n`` was given), the training eps and step size,
    the paper's PGD steps for that data, and a label."""

    model: nn.Module
    checkpoint: dict[str, Any]
    data: Dataset
    eps: float | None
    step_size: float | None
    paper_steps: int
    label: str

    @property
    def config(self) -> dict[str, Any]:
        return self.checkpoint.get("config") or {}


def open_checkpoint(path: str | Path, *, dataset: str | None = None, data_dir: str | None = None,
                    split: str = "test", n: int | None = None, subset_seed: int = 0,
                    device: str = "cpu") -> OpenedRun:
    """Loads ``path`` (weights only, checked) and its dataset (``dataset`` / ``data_dir``
    override the checkpoint's); ``n`` images: a class-stratified sample (``Dataset.subset``)."""
    from .checkpoint import load_model

    model, checkpoint = load_model(path, device=device)
    config = checkpoint.get("config") or {}
    data = load_dataset(dataset or config.get("dataset", "cifar10"), split,
                        data_dir or config.get("data_dir"))
    data = at_most(data, n, subset_seed)
    return OpenedRun(model, checkpoint, data, config.get("eps"), config.get("step_size"),
                     paper_pgd_steps(data.image_shape), model_label(checkpoint))
