"""Shared test set-up. Fixtures used by several test files live here."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pni

# The suite's models are tiny: one intra-op thread is as fast, and it keeps timings sane
# when the machine is shared (spinning OpenMP threads slow tiny ops down by 100x there).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_all(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every plan of ``pni reproduce`` run once at smoke scale (about a minute, more on a busy
    machine), shared by the reproduce tests: (the results folder, {step key: "ran"})."""
    from pni.reproduce import reproduce

    out = tmp_path_factory.mktemp("reproduce-smoke")
    return out, reproduce("all", "smoke", str(out))


@pytest.fixture(scope="module")
def noisy_model():
    """LeNet-5 with weight noise (alpha 0.5), eval mode, seeded: a random model to evaluate."""
    torch.manual_seed(0)
    return pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5).eval()
