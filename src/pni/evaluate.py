"""Accuracy under attack over several trials, with the noise on and off (Tables 1-3).

Every figure is mean ± std over ``trials`` runs with distinct seeds (the paper: 5),
"Test with PNI" (noise on) and "Test without PNI" (noise off, the same weights).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .data import Dataset, as_tensors
from .noise import is_injected, noise_enabled, noise_modules

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]

NOISE_SETTINGS = {"with_noise": True, "without_noise": False}
NOISE_TITLES = {"with_noise": "Test with PNI", "without_noise": "Test without PNI"}


class EvaluationError(ValueError):
    """A bad evaluation argument (trials, attack name, data); the message names it."""


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).argmax(1)


def correct_mask(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None,
                 batch_size: int = 256) -> Tensor:
    """Per-sample correctness (bool) of ``model`` on ``x`` or on ``attack(model, x, y)``."""
    out = []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb)
        out.append(_predict(model, xb) == yb)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None,
             batch_size: int = 256) -> float:
    """Accuracy of ``model`` (in eval mode, noise as it is) on clean or attacked images."""
    was_training = model.training
    model.eval()
    try:
        mask = correct_mask(model, x, y, attack, batch_size)
    finally:
        model.train(was_training)
    return float(mask.float().mean()) if len(mask) else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation, as the paper's mean±std."""
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), float(t.std(correction=0)) if len(t) > 1 else 0.0


@dataclass
class Evaluation:
    """Per-attack accuracies over trials for each noise setting, and per-sample results."""

    attacks: dict[str, dict[str, Any]]                 # attack name -> its parameters
    trials: int
    seeds: list[int]
    n: int
    accuracies: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # setting -> attack -> per trial
    correct: dict[str, dict[str, Tensor]] = field(default_factory=dict)          # setting -> attack -> (trials, n)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{setting: {attack: {"mean", "std"}}}`` in percent."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for setting, per_attack in self.accuracies.items():
            out[setting] = {}
            for name, values in per_attack.items():
                mean, std = mean_std([100 * v for v in values])
                out[setting][name] = {"mean": mean, "std": std}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "trials": self.trials, "seeds": self.seeds, "attacks": self.attacks,
                "accuracy_percent": self.summary(),
                "accuracy_per_trial": self.accuracies}


def _attack_table(attacks: Sequence[str] | dict[str, Attack], eps: float | None,
                  steps: int | None, step_size: float | None) -> tuple[dict[str, Attack], dict[str, dict]]:
    from .attacks.registry import build_attacks

    if isinstance(attacks, dict):
        return dict(attacks), {name: {} for name in attacks}
    return build_attacks(list(attacks), eps=eps, steps=steps, step_size=step_size)


def evaluate(model: nn.Module, data: Dataset | tuple[Tensor, Tensor],
             attacks: Sequence[str] | dict[str, Attack] = ("clean", "pgd", "fgsm"),
             trials: int = 5, noise: bool = True, *, eps: float | None = None,
             steps: int | None = None, step_size: float | None = None, seed: int = 0,
             batch_size: int = 256, device: str | torch.device | None = None,
             progress: bool = False) -> Evaluation:
    """Accuracy under each attack as mean ± std over ``trials`` seeds.

    ``attacks`` are names from ``pni.attacks.registry`` ("clean", "fgsm", "pgd", ...) or a
    dict of callables ``attack(model, x, y) -> x_adv``. ``noise=True`` evaluates with the
    noise on and again with it off (Table 2's two halves); ``noise=False`` only off. A
    model without noise is evaluated once, as "without_noise".
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise EvaluationError(f"trials must be an integer >= 1, got {trials!r}")
    x, y = as_tensors(data)
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    x, y = x.to(device), y.to(device)
    table, params = _attack_table(attacks, eps, steps, step_size)
    settings = ["with_noise", "without_noise"] if (noise and noise_modules(model)) else ["without_noise"]
    if not is_injected(model) and not noise_modules(model):
        settings = ["without_noise"]
    seeds = [seed + t for t in range(trials)]
    result = Evaluation(attacks=params, trials=trials, seeds=seeds, n=len(y))
    was_training = model.training
    model.eval()
    try:
        for setting in settings:
            result.accuracies[setting] = {}
            result.correct[setting] = {}
            with noise_enabled(model, NOISE_SETTINGS[setting]):
                for name, attack in table.items():
                    masks = []
                    for t_seed in seeds:
                        torch.manual_seed(t_seed)
                        masks.append(correct_mask(model, x, y, None if name == "clean" else attack,
                                                  batch_size))
                    stacked = torch.stack(masks).cpu()
                    result.correct[setting][name] = stacked
                    result.accuracies[setting][name] = stacked.float().mean(1).tolist()
    finally:
        model.train(was_training)
    return result


def evaluate_checkpoint(path: str, attacks: Sequence[str] = ("clean", "pgd", "fgsm"),
                        trials: int = 5, n: int | None = None, eps: float | None = None,
                        steps: int | None = None, step_size: float | None = None, noise: bool = True,
                        dataset: str | None = None, data_dir: str | None = None, split: str = "test",
                        batch_size: int = 256, seed: int = 0, device: str = "cpu",
                        progress: bool = False) -> tuple[Evaluation, str]:
    """Evaluates a ``pni train`` checkpoint on its own dataset's test split.

    Defaults follow the checkpoint's training settings: its eps and step size, and the
    paper's PGD steps (40 for 1-channel 28x28 data such as MNIST, 7 otherwise).
    Returns the evaluation and a label for the model (arch, noise location).
    """
    from .checkpoint import load_model
    from .data import load_dataset

    if n is not None and n < 1:
        raise EvaluationError(f"--n must be a positive number of images, got {n}")
    model, checkpoint = load_model(path, device=device)
    config = checkpoint.get("config", {})
    data = load_dataset(dataset or config.get("dataset", "cifar10"), split,
                        data_dir or config.get("data_dir"))
    if n is not None:
        data = data.subset(min(n, len(data)))
    eps = config.get("eps") if eps is None else eps
    if steps is None:
        steps = 40 if data.image_shape == (1, 28, 28) else 7
    if step_size is None and config.get("step_size") is not None:
        step_size = config["step_size"]
    meta = checkpoint.get("model_meta", {})
    location = (meta.get("noise") or {}).get("location")
    label = f"{meta.get('arch', 'model')} ({'PNI-' + location if location else 'no noise'})"
    evaluation = evaluate(model, data, attacks, trials, noise, eps=eps, steps=steps,
                          step_size=step_size, seed=seed, batch_size=batch_size, device=device,
                          progress=progress)
    return evaluation, label
