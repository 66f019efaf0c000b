"""Opening a trained run: a ``pni train`` checkpoint with its model, its own dataset, its
training attack settings and a label; the rules every command shares (eval, audit,
transfer, certify, reproduce, the benchmark) in one place."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..attacks.budget import paper_pgd_steps
from ..data import DataError, Dataset, at_most, load_dataset
from ..models import load_model, model_label
from ..runs import recorded_data_dir


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
    found from here: the folder it resolved to when the run trained, ``config.json``'s
    ``data_location``, else relative to the run folder), else ``$PNI_DATA`` or the default cache,
    and, when the data is not there and neither ``data_dir`` nor ``$PNI_DATA`` was set, the
    first of ``data_fallbacks(path)`` that holds it (one line on stderr says which)."""
    name = dataset or config.get("dataset", "cifar10")
    folder = data_dir or config.get("data_dir")
    if data_dir is None and folder is not None and not Path(folder).expanduser().exists():
        # a relative data_dir typed in another folder: where it pointed when the run trained
        # (config.json's data_location), else relative to the run folder
        run_folder = Path(path).resolve().parent
        for candidate in (recorded_data_dir(run_folder), run_folder / folder):
            if candidate is not None and Path(candidate).exists():
                folder = str(candidate)
                break
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
    model, checkpoint = load_model(path, device=device)
    config = checkpoint.get("config") or {}
    data, folder = run_data(path, config, split, dataset, data_dir)
    data = at_most(data, n, subset_seed)
    return OpenedRun(model, checkpoint, data, config.get("eps"), config.get("step_size"),
                     paper_pgd_steps(data.image_shape), model_label(checkpoint), folder)
