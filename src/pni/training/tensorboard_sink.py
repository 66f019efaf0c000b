"""An optional TensorBoard sink beside ``train_log.jsonl`` (``pni train --tensorboard DIR``).

Every epoch's log record goes to TensorBoard as scalars at step ``epoch``: its numbers under
``train/`` (losses, accuracies, lr, seconds; the test accuracies under ``test/``) and every
alpha under ``alpha/<layer>`` (a per-channel or per-element alpha: its mean, and a
histogram). Needs the ``tensorboard`` package (``pip install tensorboard`` or the
``torch-pni[tensorboard]`` extra); without it ``TensorBoardMissing`` says so in one line.
``train_log.jsonl`` stays the record; the sink only mirrors it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import PNIError


class TensorBoardMissing(PNIError, ImportError):
    """``--tensorboard`` was asked for but the tensorboard package is not installed."""


def _writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing("--tensorboard needs the tensorboard package, which is not installed: "
                                 "pip install tensorboard (or torch-pni[tensorboard])") from None
    return SummaryWriter


class TensorBoardSink:
    """``sink(record)`` writes one ``train_log.jsonl`` record; ``close()`` flushes the files."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer = _writer_class()(log_dir=str(self.log_dir))

    def __call__(self, record: dict[str, Any]) -> None:
        step = int(record.get("epoch", 0))
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(float(value)):
                self.writer.add_scalar(f"{'test' if key.startswith('test_') else 'train'}/{key}", value, step)
        for name, alpha in (record.get("alphas") or {}).items():
            values = _flatten(alpha)
            if values:
                self.writer.add_scalar(f"alpha/{name}", sum(values) / len(values), step)
                if len(values) > 1:
                    import numpy as np

                    self.writer.add_histogram(f"alpha_values/{name}", np.asarray(values), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _flatten(value: Any) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    return []
