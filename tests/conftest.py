"""Shared test set-up. Fixtures used by several test files live here."""
from __future__ import annotations

import torch

# The suite's models are tiny: one intra-op thread is as fast, and it keeps timings sane
# when the machine is shared (spinning OpenMP threads slow tiny ops down by 100x there).
torch.set_num_threads(1)
