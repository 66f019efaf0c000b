"""Temporary train/eval mode switches that restore each model's own mode afterwards."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Every model in eval mode inside (BatchNorm on running statistics; PNI noise stays
    on), and back in the mode it had before on exit."""
    modes = [(model, model.training) for model in models]
    try:
        for model, _ in modes:
            model.eval()
        yield
    finally:
        for model, training in modes:
            model.train(training)
