"""``train_run``: the one way pni trains a run from a config, used by ``pni train``,
``pni reproduce`` and ``pni demo`` alike, with one seeding rule: every generator (torch,
Python's ``random``, numpy) is seeded with ``config.seed`` before anything draws, so the same
config gives the same run whichever command starts it."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..data import Dataset, load_dataset
from ..seeding import seed_everything
from . import trainer
from .trainer import TrainResult, build_model

DatasetLoader = Callable[[str, str, "str | None", bool], Dataset]


def train_data(config: TrainConfig, load: DatasetLoader = load_dataset) -> tuple[Dataset, Dataset]:
    """The training set (its ``train_subset`` when set) and the test set of ``config``."""
    train_set = load(config.dataset, "train", config.data_dir, config.download)
    if config.train_subset:
        train_set = train_set.subset(config.train_subset)
    return train_set, load(config.dataset, "test", config.data_dir, config.download)


def train_run(config: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
              max_minutes: float | None = None, save_every_minutes: float | None = None,
              data: tuple[Dataset, Dataset] | None = None,
              load: DatasetLoader = load_dataset, epoch_callback: Any = None) -> TrainResult:
    """Trains the run ``config`` describes into the run folder ``out`` (``fit``'s checkpoint,
    log and config.json). Seeds every generator with ``config.seed`` first, then loads the data
    (``data``: the (train, test) sets already loaded, else ``train_data(config, load)``), builds
    the model (``build_model``) and fits it; ``resume``, ``overwrite``, ``max_minutes`` and
    ``save_every_minutes`` as ``fit`` takes them; ``epoch_callback`` (e.g. a TensorBoard sink)
    gets every epoch's log record."""
    seed_everything(config.seed)  # before anything draws: same seed, same run
    train_set, test_set = data if data is not None else train_data(config, load)
    model = build_model(config, train_set)
    result = trainer.fit(model, train_set, config, test_set, out_dir=out, resume=resume, overwrite=overwrite,
                         max_minutes=max_minutes, save_every_minutes=save_every_minutes,
                         epoch_callback=epoch_callback)
    result.model = model
    return result
