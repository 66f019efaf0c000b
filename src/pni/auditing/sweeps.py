"""Accuracy sweeps (the data behind Fig. 3 and the EOT curve): accuracy as eps, PGD steps
or EOT samples grow, on one bench (``pni.auditing.bench``).

``eps_sweep`` / ``steps_sweep`` / ``eot_sweep`` measure on a given bench (the audit's items 5-7
use them); ``sweep_eps`` / ``sweep_steps`` / ``sweep_eot`` are the public functions that
build the bench from a model and data.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..data import Dataset
from ..models import eval_mode
from ..attacks.budget import madry_step_size
from .bench import Bench, new_bench
from .result import Sweep
from .settings import AuditError


def _sweep(bench: Bench, parameter: str, values: Sequence[float],
           measure: Callable[[float], tuple[float, float]], attack: dict[str, Any], label: str) -> Sweep:
    accs, stds = [], []
    for value in values:
        mean, std = measure(value)
        accs.append(mean)
        stds.append(std)
    return Sweep(parameter, [float(v) if parameter == "eps" else int(v) for v in values], accs, stds,
                 len(bench.y), bench.trials, attack, label, bench.subset)


def eps_sweep(bench: Bench, eps_values: Sequence[float], steps: int, step_size: float | None,
               eot: int, label: str) -> Sweep:
    def measure(e: float) -> tuple[float, float]:
        size = step_size if step_size is not None else madry_step_size(e, steps)
        return bench.pgd(e, size, steps, eot)
    attack = {"attack": "pgd", "steps": steps, "eot": eot, "random_start": True,
              "step_size": step_size if step_size is not None else "2.5 * eps / steps"}
    return _sweep(bench, "eps", sorted(eps_values), measure, attack, label)


def steps_sweep(bench: Bench, steps_values: Sequence[int], eps: float, step_size: float | None,
                 eot: int, label: str) -> Sweep:
    size = step_size if step_size is not None else madry_step_size(eps, min(steps_values))
    attack = {"attack": "pgd", "eps": eps, "step_size": size, "eot": eot, "random_start": True}
    return _sweep(bench, "steps", sorted(steps_values), lambda s: bench.pgd(eps, size, int(s), eot),
                  attack, label)


def eot_sweep(bench: Bench, ks: Sequence[int], eps: float, steps: int, step_size: float | None,
               label: str) -> Sweep:
    size = step_size if step_size is not None else madry_step_size(eps, steps)
    attack = {"attack": "eot-pgd", "eps": eps, "steps": steps, "step_size": size, "random_start": True}
    return _sweep(bench, "eot", sorted(ks), lambda k: bench.pgd(eps, size, steps, int(k)), attack, label)


def _check_sweep_args(name: str, values: Sequence[float], integer: bool, low: float, high: float | None) -> None:
    values = list(values)
    if not values:
        raise AuditError(f"{name} must hold at least one value")
    for v in values:
        if integer and (isinstance(v, bool) or not isinstance(v, int)):
            raise AuditError(f"{name} must be integers, got {v!r}")
        if not isinstance(v, (int, float)) or v < low or (high is not None and v > high):
            rng = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise AuditError(f"{name} values must lie in {rng}, got {v!r}")


def sweep_eps(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], eps_values: Sequence[float],
              steps: int = 20, step_size: float | None = None, eot: int = 1, trials: int = 1,
              seed: int = 0, n: int | None = None, batch_size: int = 256, label: str = "",
              device: str | torch.device | None = None, votes: int | None = None) -> Sweep:
    """Accuracy under PGD as the L-inf bound grows (Fig. 3, top); eps 0 is clean accuracy.

    ``step_size`` None scales the step with the bound, ``2.5 * eps / steps``. Every
    attacked image is judged over ``votes`` forward passes (default 10 on a randomized
    model, 1 otherwise). Trial ``t`` seeds every batch as ``pni eval`` does
    (``pni.evaluation.evaluator.batch_seed(seed + t, batch start)``): the same numbers as ``evaluate``.
    """
    _check_sweep_args("eps_values", eps_values, False, 0.0, 1.0)
    with eval_mode(model):
        bench = new_bench(model, data, n, device, trials, seed, batch_size,
                          votes)
        return eps_sweep(bench, eps_values, steps, step_size, eot, label)


def sweep_steps(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], steps_values: Sequence[int],
                eps: float, step_size: float | None = None, eot: int = 1, trials: int = 1,
                seed: int = 0, n: int | None = None, batch_size: int = 256, label: str = "",
                device: str | torch.device | None = None, votes: int | None = None) -> Sweep:
    """Accuracy under PGD as the number of steps grows (Fig. 3, bottom), fixed step size
    (default ``2.5 * eps / min(steps_values)``: the smallest budget reaches the boundary)."""
    _check_sweep_args("steps_values", steps_values, True, 0, None)
    with eval_mode(model):
        bench = new_bench(model, data, n, device, trials, seed, batch_size,
                          votes)
        return steps_sweep(bench, steps_values, eps, step_size, eot, label)


def sweep_eot(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], ks: Sequence[int], eps: float,
              steps: int = 20, step_size: float | None = None, trials: int = 1, seed: int = 0,
              n: int | None = None, batch_size: int = 256, label: str = "",
              device: str | torch.device | None = None, votes: int | None = None) -> Sweep:
    """Accuracy under EOT-PGD as the noise draws averaged per gradient grow (the EOT curve)."""
    _check_sweep_args("ks", ks, True, 1, None)
    with eval_mode(model):
        bench = new_bench(model, data, n, device, trials, seed, batch_size,
                          votes)
        return eot_sweep(bench, ks, eps, steps, step_size, label)
