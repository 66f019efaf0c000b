"""Opening a trained run: a ``pni train`` checkpoint with its model, its own dataset, its
training attack settings and a label; the rules every command shares (eval, audit,
transfer, certify, reproduce) in one place."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .data import DataError, Dataset, at_most, load_dataset

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


def data_fallbacks(path: str | Path) -> list[Path]:
    """Where a run that records no data folder also looks for its data: ``data/`` and
    ``shared/data/`` beside the run folder and each folder above it (this repository's
    committed ``results/cpu`` runs find ``../shared/data`` this way), those that exist."""
    found = []
    for folder in Path(path).resolve().parents:
        for candidate in (folder / "data", folder / "shared" / "data"):
            if candidate.is_dir() and candidate not in found:
                found.append(candidate)
    return found


def run_data(path: str | Path, config: dict[str, Any], split: str, dataset: str | None = None,
             data_dir: str | None = None) -> tuple[Dataset, str | None]:
    """The dataset of the run whose checkpoint is ``path`` and the folder it came from:
    ``data_dir`` if given, else the run's recorded ``data_dir`` (a relative one that is not
    found from here: relative to the run folder), else ``$PNI_DATA`` or the default cache,
    and, when the data is not there and neither ``data_dir`` nor ``$PNI_DATA`` was set, the
    first of ``data_fallbacks(path)`` that holds it (one line on stderr says which)."""
    name = dataset or config.get("dataset", "cifar10")
    folder = data_dir or config.get("data_dir")
    if data_dir is None and folder is not None and not Path(folder).expanduser().is_absolute() \
            and not Path(folder).exists() and (Path(path).resolve().parent / folder).exists():
        folder = str(Path(path).resolve().parent / folder)
    if folder is not None or os.environ.get("PNI_DATA") or name in ("mnist-sample", "imagefolder"):
        return load_dataset(name, split, folder), folder
    try:
        return load_dataset(name, split), None
    except DataError as error:
        searched = data_fallbacks(path)
        for candidate in searched:
            try:
                data = load_dataset(name, split, candidate)
            except DataError:
                continue
            print(f"pni: {name} {split} read from {candidate} (the run records no data folder; "
                  f"--data-dir or PNI_DATA to choose)", file=sys.stderr, flush=True)
            return data, str(candidate)
        also = f" Also searched, as the run records no data folder: {', '.join(map(str, searched))}." \
            if searched else ""
        raise DataError(f"{error}{also}") from None


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
    data_dir: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.checkpoint.get("config") or {}


def open_checkpoint(path: str | Path, *, dataset: str | None = None, data_dir: str | None = None,
                    split: str = "test", n: int | None = None, subset_seed: int = 0,
                    device: str = "cpu") -> OpenedRun:
    """Loads ``path`` (weights only, checked) and its dataset (``dataset`` / ``data_dir``
    override the checkpoint's; where found: ``run_data``); ``n`` images: a class-stratified sample (``Dataset.subset``)."""
    from .checkpoint import load_model

    model, checkpoint = load_model(path, device=device)
    config = checkpoint.get("config") or {}
    data, folder = run_data(path, config, split, dataset, data_dir)
    data = at_most(data, n, subset_seed)
    return OpenedRun(model, checkpoint, data, config.get("eps"), config.get("step_size"),
                     paper_pgd_steps(data.image_shape), model_label(checkpoint), folder)
