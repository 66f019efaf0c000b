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


class AttackCalls:
    """Counts the attacks ``pni.evaluate`` runs (each attack over its trials is one call) and
    can stop the evaluation at the k-th, as a kill would (``kill_at``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import pni.evaluation.evaluator as evaluator

        self.calls, self._stop_at, self._error = 0, 0, BaseException
        real = evaluator._run_attack

        def counted(*args, **kwargs):
            self.calls += 1
            if self.calls == self._stop_at:
                self._stop_at = 0
                raise self._error
            return real(*args, **kwargs)

        monkeypatch.setattr(evaluator, "_run_attack", counted)

    def kill_at(self, k: int, error: type[BaseException] = KeyboardInterrupt) -> None:
        """The k-th attack from now raises ``error`` instead of running."""
        self.calls, self._stop_at, self._error = 0, k, error

    def reset(self) -> None:
        self.calls = 0


@pytest.fixture
def attack_calls(monkeypatch: pytest.MonkeyPatch) -> AttackCalls:
    return AttackCalls(monkeypatch)
