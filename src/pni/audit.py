"""The gradient-obfuscation audit (the paper's Table 7, after Athalye et al. 2018) and the
accuracy sweeps of Fig. 3 (accuracy vs eps, vs PGD steps) plus the EOT curve.

Every checklist item is *measured*, with a numeric rule stated next to its verdict:

1. one-step (FGSM) vs iterative (PGD): fail if FGSM is the stronger attack;
2. black-box (transfer from a surrogate, score-based) vs white-box: fail if a black-box
   attack is stronger;
3. unbounded attack (eps = 1, many steps): fail if accuracy does not reach about 0%;
4. random sampling in the eps-ball vs the gradient attack: fail if random points find
   adversarial examples PGD misses on a meaningful fraction of samples;
5. increasing eps: fail if accuracy does not fall (within noise) as eps grows;
6. (beyond the paper) PGD steps up to 100: fail if accuracy still falls markedly at the end;
7. (beyond the paper) EOT samples 1 -> 30: flag the model when EOT-PGD takes much more
   accuracy than single-draw PGD (the single-draw robustness is then mostly noise).

"Within noise" uses the binomial standard error over ``n x trials`` attacked images: two
accuracies ``p1``, ``p2`` differ when ``|p1 - p2| > tol = max(floor, z * sqrt(p1(1-p1)/N +
p2(1-p2)/N))``. A randomized model is measured as it is used (noise on, single-draw
gradients); every attacked image is judged over ``prediction_draws`` forward passes (its
expected single-pass correctness: the same expectation, less noise), and item 4 counts a
point as adversarial only when most of ``confirm_draws`` passes misclassify it.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import AttackError, fgsm, is_randomized, pgd
from .attacks._common import check_model_inputs
from .data import Dataset, as_tensors, at_most, stratified_indices, subset_tensors, warn_missing_classes
from .models import eval_mode, model_device
from .report import format_value

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]

ITEM_NAMES: dict[int, str] = {
    1: "One-step vs iterative attack",
    2: "Black-box vs white-box attack",
    3: "Unbounded attack",
    4: "Random sampling vs gradient attack",
    5: "Increasing eps",
    6: "PGD steps (convergence)",
    7: "EOT samples",
}
PAPER_ITEMS: tuple[int, ...] = (1, 2, 3, 4, 5)
ALL_ITEMS: tuple[int, ...] = tuple(ITEM_NAMES)
EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)


class AuditError(ValueError):
    """A bad audit argument (eps, items, sample counts, ...); the message names it."""


# --- settings --------------------------------------------------------------------------

@dataclass
class AuditSettings:
    """Every knob of the audit; the defaults are the rules documented in the report."""

    eps: float
    n: int | None = None                   # a class-stratified sample of n images (None: all)
    items: tuple[int, ...] = ALL_ITEMS
    steps: int = 20                        # PGD of items 1, 2, 4, 5, 7
    step_size: float | None = None         # default 2.5 * eps / steps (Madry et al.)
    trials: int = 1                        # seeds per accuracy (noise and random starts)
    seed: int = 0
    batch_size: int = 256
    z: float = 2.0                         # noise tolerance, in binomial standard errors
    tol_floor: float = 0.01                # smallest tolerance (accuracy fraction)
    eps_values: tuple[float, ...] | None = None  # item 5 (default eps x EPS_FRACTIONS, <= 1)
    unbounded_eps: float = 1.0             # item 3
    unbounded_steps: int = 100
    unbounded_step_size: float = 0.1
    max_unbounded_accuracy: float = 0.02
    random_samples: int = 1000             # item 4: random points per image
    random_n: int = 100                    # item 4: images (a stratified sample of the n)
    random_candidates: int = 5             # item 4: lowest-margin points re-checked per image
    confirm_draws: int = 9                 # item 4: noise draws judging a point (randomized)
    prediction_draws: int = 10             # noise draws judging every attacked image (randomized)
    max_random_fraction: float = 0.01
    steps_values: tuple[int, ...] = (10, 20, 50, 100)   # item 6
    eot_ks: tuple[int, ...] = (1, 2, 5, 10, 20, 30)     # item 7
    eot_plateau: int = 2                   # item 7: plateau = min over the last ks (not k=1)
    max_eot_drop: float = 0.05
    surrogate_epochs: int = 5              # item 2: surrogate trained on train_data
    surrogate_train_n: int | None = 10000
    surrogate_adversarial: bool = False
    score_n: int = 100                     # item 2: images for the score-based attack (0: none)
    score_queries: int = 20000             # item 2: ZOO queries per image
    score_coords: int = 128                # item 2: ZOO coordinates per iteration
    score_lr: float | None = None          # item 2: ZOO's Adam step (default max(0.01, eps / 4))

    @property
    def pgd_step_size(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return 2.5 * self.eps / self.steps if self.steps else self.eps

    def sweep_eps_values(self) -> tuple[float, ...]:
        if self.eps_values is not None:
            return tuple(sorted(set(float(e) for e in self.eps_values)))
        return tuple(sorted({min(1.0, round(f * self.eps, 6)) for f in EPS_FRACTIONS}))

    def validate(self) -> AuditSettings:
        def bad(name: str, expected: str) -> AuditError:
            flag = "--" + name.replace("_", "-")
            return AuditError(f"audit setting {name} ({flag}) = {getattr(self, name)!r}: expected {expected}")

        def check_int(name: str, minimum: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise bad(name, f"an integer >= {minimum}")

        def check_fraction(name: str, low_open: bool = True, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 1
            ok = ok and (value > 0 if low_open else value >= 0)
            if not ok:
                raise bad(name, "a number in (0, 1]" if low_open else "a number in [0, 1]")

        check_fraction("eps")
        check_fraction("step_size", optional=True)
        check_fraction("score_lr", optional=True)
        check_fraction("unbounded_eps")
        check_fraction("unbounded_step_size")
        for name in ("max_unbounded_accuracy", "max_random_fraction", "max_eot_drop", "tol_floor"):
            check_fraction(name, low_open=False)
        check_int("n", 1, optional=True)
        check_int("surrogate_train_n", 1, optional=True)
        for name, minimum in (("steps", 1), ("trials", 1), ("batch_size", 1), ("unbounded_steps", 1),
                              ("random_samples", 1), ("random_n", 1), ("random_candidates", 1),
                              ("confirm_draws", 1), ("prediction_draws", 1), ("eot_plateau", 1), ("surrogate_epochs", 1),
                              ("score_n", 0), ("score_queries", 3), ("score_coords", 1), ("seed", 0)):
            check_int(name, minimum)
        if not isinstance(self.z, (int, float)) or self.z < 0:
            raise bad("z", "a number >= 0")
        items = tuple(self.items)
        if not items or any(isinstance(i, bool) or i not in ITEM_NAMES for i in items):
            raise bad("items", f"a non-empty list of item numbers among {', '.join(map(str, ITEM_NAMES))}")
        self.items = tuple(sorted(set(items)))
        if self.eps_values is not None:
            values = tuple(self.eps_values)
            if len(values) < 2 or any(not isinstance(e, (int, float)) or not 0 <= e <= 1 for e in values):
                raise bad("eps_values", "at least two numbers in [0, 1]")
        for name, minimum in (("steps_values", 1), ("eot_ks", 1)):
            values = tuple(getattr(self, name))
            if len(values) < 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                                      for v in values):
                raise bad(name, f"at least two integers >= {minimum}")
            setattr(self, name, tuple(sorted(set(values))))
        return self

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["pgd_step_size"] = self.pgd_step_size
        return values


def make_settings(eps: float | None, settings: AuditSettings | None = None,
                  **overrides: Any) -> AuditSettings:
    """A validated AuditSettings from ``settings`` (or the defaults), ``eps`` and overrides."""
    known = {f.name for f in dataclasses.fields(AuditSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise AuditError(f"unknown audit setting(s): {', '.join(unknown)}; "
                         f"known settings: {', '.join(sorted(known))}")
    if settings is None:
        if eps is None:
            raise AuditError("eps is required: the L-inf radius the model is audited at")
        settings = AuditSettings(eps=eps)
    changes = dict(overrides)
    if eps is not None:
        changes["eps"] = eps
    return dataclasses.replace(settings, **changes).validate()


# --- results ---------------------------------------------------------------------------

@dataclass
class Sweep:
    """Accuracy (fractions) as one attack parameter varies, the data behind Fig. 3 / EOT."""

    parameter: str                     # "eps", "steps" or "eot"
    values: list[float]
    accuracy: list[float]              # mean over trials
    std: list[float]
    n: int
    trials: int
    attack: dict[str, Any] = field(default_factory=dict)  # the fixed attack settings
    label: str = ""
    subset: dict[str, Any] | None = None  # which subset of the data (pni.data.subset_record)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Sweep:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class AuditItem:
    """One checklist item: its verdict (None when not measured), the numbers, the rule."""

    number: int
    name: str
    passed: bool | None
    evidence: dict[str, Any]
    rule: str
    summary: str = ""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "not measured"}[self.passed]

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "name": self.name, "passed": self.passed,
                "verdict": self.verdict, "summary": self.summary, "evidence": self.evidence,
                "rule": self.rule}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> AuditItem:
        return cls(number=int(values["number"]), name=values["name"], passed=values["passed"],
                   evidence=dict(values.get("evidence", {})), rule=values.get("rule", ""),
                   summary=values.get("summary", ""))


TOLERANCE_RULE = ("tol(p1, p2) = max(floor, z * sqrt(p1(1-p1)/N + p2(1-p2)/N)) with N = images x "
                  "trials: two accuracies differ only when they are further apart than tol")


@dataclass
class AuditReport:
    """The audit of one model: its items, the sweeps, the settings used."""

    label: str
    items: list[AuditItem]
    settings: dict[str, Any]
    n: int
    randomized: bool
    clean_accuracy: float
    sweeps: dict[str, Sweep] = field(default_factory=dict)
    subset: dict[str, Any] | None = None  # which subset of the data (pni.data.subset_record)

    def item(self, number: int) -> AuditItem:
        for item in self.items:
            if item.number == number:
                return item
        raise KeyError(f"item {number} was not run (items run: {[i.number for i in self.items]})")

    @property
    def failed(self) -> list[int]:
        return [item.number for item in self.items if item.passed is False]

    @property
    def passed(self) -> bool:
        """True when no measured item failed."""
        return not self.failed

    def verdict(self) -> str:
        if self.failed:
            names = ", ".join(f"{i} ({ITEM_NAMES[i].lower()})" for i in self.failed)
            return f"gradient obfuscation suspected: item(s) {names} failed"
        measured = [i.number for i in self.items if i.passed is not None]
        return f"no sign of gradient obfuscation in the measured items ({', '.join(map(str, measured))})"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.label, "n": self.n, "randomized": self.randomized,
                "clean_accuracy": self.clean_accuracy, "verdict": self.verdict(),
                "failed": self.failed, "tolerance_rule": TOLERANCE_RULE,
                "settings": self.settings, "items": [item.to_json() for item in self.items],
                "sweeps": {name: sweep.to_json() for name, sweep in self.sweeps.items()},
                **({"subset": self.subset} if self.subset is not None else {})}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> AuditReport:
        return cls(label=values.get("model", "model"),
                   items=[AuditItem.from_json(i) for i in values.get("items", [])],
                   settings=dict(values.get("settings", {})), n=int(values.get("n", 0)),
                   randomized=bool(values.get("randomized", False)),
                   clean_accuracy=float(values.get("clean_accuracy", math.nan)),
                   sweeps={k: Sweep.from_json(v) for k, v in values.get("sweeps", {}).items()},
                   subset=dict(values["subset"]) if values.get("subset") else None)

    def to_markdown(self, figures: Mapping[str, str] | None = None) -> str:
        """The report: verdict, the checklist table (evidence and rule per item), the sweeps."""
        s = self.settings
        lines = [f"# Gradient-obfuscation audit: {self.label}", "",
                 f"{self.n} images{_subset_note(self.subset)}, eps {s.get('eps', float('nan')):.4g}, {s.get('trials', 1)} trial(s) "
                 f"from seed {s.get('seed', 0)}; clean accuracy {100 * self.clean_accuracy:.2f}%. "
                 "Model randomized: " + ("yes (two forward passes of the same images differ); "
                                         "measured as it is used, noise on." if self.randomized else
                                         "no (two forward passes of the same images agree)."), "",
                 f"**Verdict: {self.verdict()}.**", "",
                 "Items 1-5 are the checklist of Athalye et al. (2018) as in the paper's Table 7; "
                 "6 and 7 go beyond the paper.", "",
                 "| # | Check | Verdict | Evidence | Rule (fails when) |", "|---|---|---|---|---|"]
        for item in self.items:
            verdict = f"**{item.verdict}**" if item.passed is False else item.verdict
            lines.append(f"| {item.number} | {item.name} | {verdict} | {_md(item.summary)} | {_md(item.rule)} |")
        lines += ["", f"Noise tolerance: {TOLERANCE_RULE} (z = {s.get('z')}, floor = "
                      f"{100 * s.get('tol_floor', 0):.1f} points).", ""]
        sweep_titles = {"eps": "Accuracy vs eps (Fig. 3, top)", "steps": "Accuracy vs PGD steps (Fig. 3, bottom)",
                        "eot": "Accuracy vs EOT samples"}
        for name, sweep in self.sweeps.items():
            lines += [f"## {sweep_titles.get(name, name)}", "", sweep_table(sweep)]
            settings = ", ".join(f"{k}={format_value(v)}" for k, v in sweep.attack.items())
            if settings:
                lines += [f"Attack: {settings}.", ""]
        for title, path in (figures or {}).items():
            lines += [f"![{title}]({path})", ""]
        return "\n".join(lines)


def _subset_note(subset: Mapping[str, Any] | None) -> str:
    if not subset:
        return ""
    return (f" (a class-stratified sample of {subset['of']}, seed {subset['seed']})"
            if subset.get("method") == "stratified" else f" (chosen from {subset['of']})")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def sweep_table(sweep: Sweep) -> str:
    """A two-row Markdown table: the swept values and accuracy (%, ± std over trials)."""
    head = {"eps": "eps", "steps": "PGD steps", "eot": "EOT samples"}.get(sweep.parameter, sweep.parameter)
    cells = [format_value(float(v)) if sweep.parameter == "eps" else str(int(v)) for v in sweep.values]
    accs = [f"{100 * a:.2f}" + (f"±{100 * d:.2f}" if sweep.trials > 1 else "")
            for a, d in zip(sweep.accuracy, sweep.std)]
    return ("| " + " | ".join([head] + cells) + " |\n" + "|" + "---|" * (len(cells) + 1) + "\n"
            + "| " + " | ".join(["accuracy (%)"] + accs) + " |\n")


# --- measuring -------------------------------------------------------------------------

def tolerance(p1: float, p2: float, n: int, z: float = 2.0, floor: float = 0.01) -> float:
    """How far apart two accuracies (fractions over ``n`` images) must be to differ."""
    n = max(int(n), 1)
    se = math.sqrt(max(p1 * (1 - p1), 0.0) / n + max(p2 * (1 - p2), 0.0) / n)
    return max(floor, z * se)


class _Bench:
    """Accuracies of one model on fixed images, over trials, cached by attack key.

    Each attacked image is judged over ``draws`` forward passes (its expected single-pass
    correctness): the same expectation as one pass, with less noise on a randomized model.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, trials: int = 1, seed: int = 0,
                 batch_size: int = 256, draws: int = 1, subset: dict[str, Any] | None = None) -> None:
        self.model, self.x, self.y, self.subset = model, x, y, subset
        self.trials, self.seed, self.batch_size, self.draws = trials, seed, batch_size, draws
        self.cache: dict[tuple, tuple[float, float]] = {}

    @property
    def n_eff(self) -> int:
        return len(self.y) * self.trials

    def _correct(self, attack: Attack | None) -> Tensor:
        from .attacks import predict_votes

        out = []
        for start in range(0, len(self.y), self.batch_size):
            xb, yb = self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            if attack is not None:
                xb = attack(self.model, xb, yb)
            out.append((predict_votes(self.model, xb, self.draws, self.batch_size) == yb).float().mean(0))
        return torch.cat(out)

    def accuracy(self, key: tuple, attack: Attack | None) -> tuple[float, float]:
        """Mean and std over trials; trial t runs under ``torch.manual_seed(seed + t)``."""
        if key not in self.cache:
            accs = []
            for t in range(self.trials):
                torch.manual_seed(self.seed + t)
                accs.append(float(self._correct(attack).mean()))
            values = torch.tensor(accs, dtype=torch.float64)
            std = float(values.std(correction=0)) if len(accs) > 1 else 0.0
            self.cache[key] = (float(values.mean()), std)
        return self.cache[key]

    def clean(self) -> tuple[float, float]:
        return self.accuracy(("clean",), None)

    def fgsm(self, eps: float) -> tuple[float, float]:
        return self.accuracy(("fgsm", eps), lambda m, x, y: fgsm(m, x, y, eps))

    def pgd(self, eps: float, step_size: float, steps: int, eot: int = 1) -> tuple[float, float]:
        if eps == 0:
            return self.clean()
        step_size = min(step_size, 1.0)
        return self.accuracy(("pgd", eps, step_size, steps, eot),
                             lambda m, x, y: pgd(m, x, y, eps, step_size, steps, True, eot))


def _prepare(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], n: int | None,
             device: str | torch.device | None) -> tuple[Tensor, Tensor, dict[str, Any] | None]:
    """Images and labels of a class-stratified sample of ``n`` (all: None), on ``device``,
    and the subset record; warns (one line) when the sample lacks one of the classes."""
    classes = _known_classes(model, data)
    x, y, subset = subset_tensors(data, n, num_classes=classes)
    if len(y) == 0:
        raise AuditError("the audit needs at least one image; the data is empty")
    if classes is not None:
        what = f"the audited subset ({len(y)} images)" if subset else f"the audited data ({len(y)} images)"
        warn_missing_classes(y, classes, what, data.classes if isinstance(data, Dataset) else None)
    if device is None:
        device = model_device(model)
    x, y = x.to(device), y.to(device)
    try:  # finite weights; pixels, labels and image shape that fit the model
        check_model_inputs(model, x, y)
    except AttackError as error:
        raise AuditError(str(error)) from None
    return x, y, subset


def _known_classes(model: nn.Module, data: Dataset | tuple[Tensor, Tensor]) -> int | None:
    if isinstance(data, Dataset):
        return len(data.classes)
    classes = getattr(model, "num_classes", None)
    return classes if isinstance(classes, int) else None


def _stratified_head(x: Tensor, y: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``m`` of the images, class-stratified (all of them, in order, when ``m`` covers them)."""
    if m >= len(y):
        return x, y
    index = stratified_indices(y.cpu(), m).to(y.device)
    return x[index], y[index]


def _sweep(bench: _Bench, parameter: str, values: Sequence[float],
           measure: Callable[[float], tuple[float, float]], attack: dict[str, Any], label: str) -> Sweep:
    accs, stds = [], []
    for value in values:
        mean, std = measure(value)
        accs.append(mean)
        stds.append(std)
    return Sweep(parameter, [float(v) if parameter == "eps" else int(v) for v in values], accs, stds,
                 len(bench.y), bench.trials, attack, label, bench.subset)


def _eps_sweep(bench: _Bench, eps_values: Sequence[float], steps: int, step_size: float | None,
               eot: int, label: str) -> Sweep:
    def measure(e: float) -> tuple[float, float]:
        size = step_size if step_size is not None else (2.5 * e / steps if steps else e)
        return bench.pgd(e, size, steps, eot)
    attack = {"attack": "pgd", "steps": steps, "eot": eot, "random_start": True,
              "step_size": step_size if step_size is not None else "2.5 * eps / steps"}
    return _sweep(bench, "eps", sorted(eps_values), measure, attack, label)


def _steps_sweep(bench: _Bench, steps_values: Sequence[int], eps: float, step_size: float | None,
                 eot: int, label: str) -> Sweep:
    size = step_size if step_size is not None else 2.5 * eps / min(steps_values)
    attack = {"attack": "pgd", "eps": eps, "step_size": size, "eot": eot, "random_start": True}
    return _sweep(bench, "steps", sorted(steps_values), lambda s: bench.pgd(eps, size, int(s), eot),
                  attack, label)


def _eot_sweep(bench: _Bench, ks: Sequence[int], eps: float, steps: int, step_size: float | None,
               label: str) -> Sweep:
    size = step_size if step_size is not None else 2.5 * eps / steps
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
              device: str | torch.device | None = None, draws: int | None = None) -> Sweep:
    """Accuracy under PGD as the L-inf bound grows (Fig. 3, top); eps 0 is clean accuracy.

    ``step_size`` None scales the step with the bound, ``2.5 * eps / steps``. Every
    attacked image is judged over ``draws`` forward passes (default 10 on a randomized
    model, 1 otherwise). Trial ``t`` runs under ``torch.manual_seed(seed + t)``.
    """
    _check_sweep_args("eps_values", eps_values, False, 0.0, 1.0)
    with eval_mode(model):
        bench = _new_bench(model, data, n, device, trials, seed, batch_size, draws)
        return _eps_sweep(bench, eps_values, steps, step_size, eot, label)


def sweep_steps(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], steps_values: Sequence[int],
                eps: float, step_size: float | None = None, eot: int = 1, trials: int = 1,
                seed: int = 0, n: int | None = None, batch_size: int = 256, label: str = "",
                device: str | torch.device | None = None, draws: int | None = None) -> Sweep:
    """Accuracy under PGD as the number of steps grows (Fig. 3, bottom), fixed step size
    (default ``2.5 * eps / min(steps_values)``: the smallest budget reaches the boundary)."""
    _check_sweep_args("steps_values", steps_values, True, 0, None)
    with eval_mode(model):
        bench = _new_bench(model, data, n, device, trials, seed, batch_size, draws)
        return _steps_sweep(bench, steps_values, eps, step_size, eot, label)


def sweep_eot(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], ks: Sequence[int], eps: float,
              steps: int = 20, step_size: float | None = None, trials: int = 1, seed: int = 0,
              n: int | None = None, batch_size: int = 256, label: str = "",
              device: str | torch.device | None = None, draws: int | None = None) -> Sweep:
    """Accuracy under EOT-PGD as the noise draws averaged per gradient grow (the EOT curve)."""
    _check_sweep_args("ks", ks, True, 1, None)
    with eval_mode(model):
        bench = _new_bench(model, data, n, device, trials, seed, batch_size, draws)
        return _eot_sweep(bench, ks, eps, steps, step_size, label)


def _new_bench(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], n: int | None,
               device: str | torch.device | None, trials: int, seed: int, batch_size: int,
               draws: int | None) -> _Bench:
    x, y, subset = _prepare(model, data, n, device)
    if draws is None:
        draws = AuditSettings.prediction_draws if is_randomized(model, x[:16]) else 1
    elif isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise AuditError(f"draws must be an integer >= 1, got {draws!r}")
    return _Bench(model, x, y, trials, seed, batch_size, draws, subset)


# --- random sampling (item 4) ------------------------------------------------------------

@torch.no_grad()
def random_search(model: nn.Module, x: Tensor, y: Tensor, eps: float, samples: int = 1000,
                  candidates: int = 5, batch_size: int = 256,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random points of the L-inf eps-ball around each image (half uniform inside, half
    vertices ``x +- eps``), clipped to [0, 1]. Returns each image's ``candidates``
    lowest-margin points ``(N, candidates, C, H, W)`` and their margins ``(N, candidates)``
    (true logit minus the best other; negative: misclassified in that forward pass)."""
    n_vertex = samples // 2
    best_points, best_margins = [], []
    for i in range(len(y)):
        xi, yi = x[i:i + 1], y[i]
        points_i = torch.empty((0, *xi.shape[1:]), device=x.device)
        margins_i = torch.empty(0, device=x.device)
        for start in range(0, samples, batch_size):
            count = min(batch_size, samples - start)
            u = torch.rand((count, *xi.shape[1:]), generator=generator).to(x.device)
            vertex = (torch.arange(start, start + count, device=x.device) < n_vertex).view(-1, 1, 1, 1)
            delta = torch.where(vertex, torch.sign(u - 0.5), 2 * u - 1) * eps
            pts = (xi + delta).clamp_(0.0, 1.0)
            logits = model(pts)
            true = logits[:, yi].clone()
            logits[:, yi] = -torch.inf
            margin = true - logits.max(1).values
            points_i = torch.cat([points_i, pts])
            margins_i = torch.cat([margins_i, margin])
            keep = torch.argsort(margins_i)[:candidates]
            points_i, margins_i = points_i[keep], margins_i[keep]
        best_points.append(points_i)
        best_margins.append(margins_i)
    return torch.stack(best_points), torch.stack(best_margins)


@torch.no_grad()
def _majority_wrong(model: nn.Module, x: Tensor, y: Tensor, draws: int) -> Tensor:
    """Per image: misclassified in more than half of ``draws`` forward passes."""
    wrong = torch.zeros(len(y), device=y.device)
    for _ in range(draws):
        wrong += (model(x).argmax(1) != y).float()
    return wrong > draws / 2


# --- the items ------------------------------------------------------------------------

def _pct(p: float) -> float:
    return round(100 * p, 4)


def _item1(bench: _Bench, s: AuditSettings) -> AuditItem:
    acc_f, _ = bench.fgsm(s.eps)
    acc_p, _ = bench.pgd(s.eps, s.pgd_step_size, s.steps)
    tol = tolerance(acc_f, acc_p, bench.n_eff, s.z, s.tol_floor)
    passed = not acc_f < acc_p - tol
    evidence = {"fgsm_accuracy": _pct(acc_f), "pgd_accuracy": _pct(acc_p), "tolerance": _pct(tol),
                "pgd_steps": s.steps, "pgd_step_size": s.pgd_step_size}
    summary = f"FGSM {100 * acc_f:.2f}% vs PGD-{s.steps} {100 * acc_p:.2f}% (tol {100 * tol:.2f} pts)"
    rule = "FGSM accuracy < PGD accuracy - tol (the one-step attack is the stronger one)"
    return AuditItem(1, ITEM_NAMES[1], passed, evidence, rule, summary)


def _item3(bench: _Bench, s: AuditSettings) -> AuditItem:
    acc, _ = bench.pgd(s.unbounded_eps, s.unbounded_step_size, s.unbounded_steps)
    limit = s.max_unbounded_accuracy
    threshold = limit + s.z * math.sqrt(limit * (1 - limit) / bench.n_eff)
    passed = acc <= threshold
    evidence = {"accuracy": _pct(acc), "threshold": _pct(threshold), "eps": s.unbounded_eps,
                "steps": s.unbounded_steps, "step_size": s.unbounded_step_size}
    summary = (f"PGD-{s.unbounded_steps} at eps {s.unbounded_eps:g}: {100 * acc:.2f}% "
               f"(threshold {100 * threshold:.2f}%)")
    rule = (f"accuracy under PGD at eps {s.unbounded_eps:g} ({s.unbounded_steps} steps of "
            f"{s.unbounded_step_size:g}) > {100 * limit:g}% + z*SE (does not reach about 0%)")
    return AuditItem(3, ITEM_NAMES[3], passed, evidence, rule, summary)


def _item4(model: nn.Module, bench: _Bench, s: AuditSettings, randomized: bool) -> AuditItem:
    m = min(s.random_n, len(bench.y))
    x, y = _stratified_head(bench.x, bench.y, m)
    draws = s.confirm_draws if randomized else 1
    torch.manual_seed(s.seed)
    x_pgd = torch.cat([pgd(model, x[i:i + bench.batch_size], y[i:i + bench.batch_size], s.eps,
                           s.pgd_step_size, s.steps) for i in range(0, m, bench.batch_size)])
    pgd_found = _majority_wrong(model, x_pgd, y, draws)
    generator = torch.Generator().manual_seed(s.seed)
    points, margins = random_search(model, x, y, s.eps, s.random_samples, s.random_candidates,
                                    bench.batch_size, generator)
    random_found = torch.zeros(m, dtype=torch.bool, device=y.device)
    for c in range(points.shape[1]):
        candidate = margins[:, c] < 0
        if candidate.any():
            idx = candidate.nonzero().flatten()
            confirmed = _majority_wrong(model, points[idx, c], y[idx], draws)
            random_found[idx] |= confirmed
    missed = random_found & ~pgd_found
    fraction = float(missed.float().mean())
    limit = s.max_random_fraction
    threshold = limit + s.z * math.sqrt(limit * (1 - limit) / m)
    passed = fraction <= threshold
    evidence = {"images": m, "random_points_per_image": s.random_samples,
                "random_found": int(random_found.sum()), "pgd_found": int(pgd_found.sum()),
                "random_found_pgd_missed": int(missed.sum()), "fraction": _pct(fraction),
                "threshold": _pct(threshold), "confirm_draws": draws}
    summary = (f"random sampling found {int(random_found.sum())}/{m}, PGD {int(pgd_found.sum())}/{m}; "
               f"random-only {int(missed.sum())} ({100 * fraction:.2f}%, threshold {100 * threshold:.2f}%)")
    rule = (f"fraction of images where {s.random_samples} random points of the eps-ball find an "
            f"adversarial example and PGD does not > {100 * limit:g}% + z*SE"
            + (f"; a point counts when misclassified in most of {draws} noise draws" if draws > 1 else ""))
    return AuditItem(4, ITEM_NAMES[4], passed, evidence, rule, summary)


def _item5(bench: _Bench, s: AuditSettings, label: str) -> tuple[AuditItem, Sweep]:
    sweep = _eps_sweep(bench, s.sweep_eps_values(), s.steps, None, 1, label)
    accs = sweep.accuracy
    rises = []
    for i in range(len(accs)):
        for j in range(i + 1, len(accs)):
            tol = tolerance(accs[i], accs[j], bench.n_eff, s.z, s.tol_floor)
            rises.append((accs[j] - accs[i] - tol, i, j))
    worst = max(rises)
    overall_tol = tolerance(accs[0], accs[-1], bench.n_eff, s.z, s.tol_floor)
    drop = accs[0] - accs[-1]
    at_zero = accs[-1] <= tolerance(accs[-1], 0.0, bench.n_eff, s.z, s.tol_floor)
    falls = drop > overall_tol or at_zero
    passed = falls and worst[0] <= 0
    evidence = {"eps": sweep.values, "accuracy": [_pct(a) for a in accs], "overall_drop": _pct(drop),
                "overall_tolerance": _pct(overall_tol),
                "largest_rise": _pct(accs[worst[2]] - accs[worst[1]]),
                "largest_rise_between": [sweep.values[worst[1]], sweep.values[worst[2]]]}
    summary = (f"{100 * accs[0]:.2f}% at eps {sweep.values[0]:.4g} -> {100 * accs[-1]:.2f}% at eps "
               f"{sweep.values[-1]:.4g}; largest rise {100 * (accs[worst[2]] - accs[worst[1]]):.2f} pts")
    rule = ("accuracy at the largest eps is neither below the smallest eps's by more than tol "
            "nor within tol of 0%, or accuracy rises by more than tol from a smaller to a larger eps")
    return AuditItem(5, ITEM_NAMES[5], passed, evidence, rule, summary), sweep


def _item6(bench: _Bench, s: AuditSettings, label: str) -> tuple[AuditItem, Sweep]:
    sweep = _steps_sweep(bench, s.steps_values, s.eps, s.pgd_step_size, 1, label)
    accs = sweep.accuracy
    end_drop = accs[-2] - accs[-1]
    tol = tolerance(accs[-2], accs[-1], bench.n_eff, s.z, s.tol_floor)
    passed = end_drop <= tol
    a, b = sweep.values[-2], sweep.values[-1]
    evidence = {"steps": sweep.values, "accuracy": [_pct(v) for v in accs], "end_drop": _pct(end_drop),
                "tolerance": _pct(tol), "step_size": s.pgd_step_size}
    summary = (f"PGD-{a}: {100 * accs[-2]:.2f}% -> PGD-{b}: {100 * accs[-1]:.2f}% "
               f"(drop {100 * end_drop:.2f} pts, tol {100 * tol:.2f})")
    rule = (f"accuracy(PGD-{a}) - accuracy(PGD-{b}) > tol (still falling at the end: the attack "
            "has not converged)")
    return AuditItem(6, ITEM_NAMES[6], passed, evidence, rule, summary), sweep


def _item7(bench: _Bench, s: AuditSettings, randomized: bool, label: str) -> tuple[AuditItem, Sweep]:
    ks = sorted(set(s.eot_ks) | {1})
    plateau_n = max(1, min(s.eot_plateau, len(ks) - 1))
    rule = (f"accuracy(EOT k=1) - min(accuracy at the {plateau_n} largest k) > "
            f"max({100 * s.max_eot_drop:g} pts, tol): single-draw PGD robustness is mostly noise")
    if not randomized:
        sweep = _eot_sweep(bench, [1], s.eps, s.steps, s.pgd_step_size, label)
        evidence = {"randomized": False, "ks": [1], "accuracy": [_pct(sweep.accuracy[0])], "drop": 0.0}
        summary = ("deterministic model: every EOT draw gives the same gradient, so EOT-k equals "
                   f"PGD ({100 * sweep.accuracy[0]:.2f}%); drop 0")
        return AuditItem(7, ITEM_NAMES[7], True, evidence, rule, summary), sweep
    sweep = _eot_sweep(bench, ks, s.eps, s.steps, s.pgd_step_size, label)
    accs = sweep.accuracy
    first = accs[0]
    plateau = min(accs[-plateau_n:])
    drop = first - plateau
    tol = tolerance(first, plateau, bench.n_eff, s.z, s.tol_floor)
    limit = max(s.max_eot_drop, tol)
    passed = drop <= limit
    evidence = {"randomized": True, "ks": sweep.values, "accuracy": [_pct(a) for a in accs],
                "plateau": _pct(plateau), "drop": _pct(drop), "limit": _pct(limit)}
    summary = (f"EOT k=1 {100 * first:.2f}% -> plateau {100 * plateau:.2f}% (k={sweep.values[-plateau_n]}"
               f"..{sweep.values[-1]}): drop {100 * drop:.2f} pts (limit {100 * limit:.2f})")
    return AuditItem(7, ITEM_NAMES[7], passed, evidence, rule, summary), sweep


# --- item 2: black-box attacks ------------------------------------------------------------

def _num_classes(model: nn.Module, data: Dataset | tuple[Tensor, Tensor]) -> int:
    if isinstance(data, Dataset):
        return len(data.classes)
    classes = getattr(model, "num_classes", None)
    if isinstance(classes, int):
        return classes
    return max(2, int(as_tensors(data)[1].max()) + 1)


def train_surrogate(train_data: Dataset | tuple[Tensor, Tensor], arch: str | None = None,
                    num_classes: int | None = None, epochs: int = 5, n: int | None = 10000,
                    adversarial: bool = False, eps: float | None = None, seed: int = 0,
                    device: str = "cpu", progress: bool = False) -> nn.Module:
    """A substitute model for transfer attacks (the paper's Table 5), trained with ``pni.fit``:
    plain training by default, PGD adversarial training at ``eps`` with ``adversarial``, on
    ``n`` images (a class-stratified sample drawn with ``seed``; None: all).
    ``arch`` defaults to LeNet-5 for 1x28x28 images and ResNet-20 otherwise."""
    from .config import TrainConfig
    from .models import create_model
    from .train import fit

    x, y, _ = subset_tensors(train_data, n, seed)
    if len(y) == 0:
        raise AuditError("train_data for the surrogate is empty")
    if arch is None:
        arch = "lenet5" if tuple(x.shape[1:]) == (1, 28, 28) else "resnet20"
    if num_classes is None:
        num_classes = len(train_data.classes) if isinstance(train_data, Dataset) else max(2, int(y.max()) + 1)
    if isinstance(train_data, Dataset):
        stats = (train_data.mean, train_data.std)
    else:
        dims = [0, 2, 3]
        stats = (x.mean(dims).tolist(), x.std(dims).clamp_min(1e-3).tolist())
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes, in_channels=x.shape[1], normalize=stats)
    steps = 7
    eps_train = 8 / 255 if eps is None else eps
    config = TrainConfig(model=arch, location=None, epochs=epochs, batch_size=128,
                         lr=0.05, milestones=[], adversarial=adversarial, eps=eps_train,
                         steps=steps, step_size=2.5 * eps_train / steps, eval_subset=0,
                         augment="none", seed=seed, device=device, progress=progress)
    fit(model, (x, y), config)
    return model.eval()


def _transfer_from_surrogate(surrogate: nn.Module, s: AuditSettings) -> tuple[Attack, dict[str, Any]]:
    """Item 2's transfer attack (the paper's Table 5, S => T): PGD examples crafted on the
    surrogate, judged on the audited model like every other attack of the audit."""
    surrogate.eval()

    def attack(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return pgd(surrogate, x, y, s.eps, s.pgd_step_size, s.steps)

    return attack, {"source": "surrogate", "attack": "pgd", "eps": s.eps, "steps": s.steps,
                    "step_size": s.pgd_step_size}


def _score_based(model: nn.Module, x: Tensor, y: Tensor, s: AuditSettings) -> tuple[Tensor | None, dict[str, Any]]:
    """Item 2's score-based attack: ZOO (``pni.attacks.zoo``, queries of the model's scores
    only) within the eps-ball, on ``score_n`` of the images (class-stratified), ``score_queries``
    per image."""
    try:
        from .attacks.zoo import zoo
    except ImportError:
        return None, {"attack": "zoo", "not_measured": "pni.attacks.zoo is not available"}
    coords = min(s.score_coords, int(x[0].numel()))
    steps = max(1, s.score_queries // (2 * coords + 1))
    lr = s.score_lr if s.score_lr is not None else max(0.01, s.eps / 4)
    params = {"attack": "zoo", "eps": s.eps, "steps": steps, "coords": coords, "lr": lr,
              "queries_per_image": steps * (2 * coords + 1), "images": len(y)}
    torch.manual_seed(s.seed)
    result = zoo(model, x, y, steps=steps, coords=coords, eps=s.eps, lr=lr)
    return result.x_adv.detach(), params


def _item2(model: nn.Module, bench: _Bench, s: AuditSettings, surrogate: nn.Module | None,
           surrogate_note: str) -> AuditItem:
    acc_p, _ = bench.pgd(s.eps, s.pgd_step_size, s.steps)
    acc_f, _ = bench.fgsm(s.eps)
    white = min(acc_p, acc_f)
    rule = ("accuracy under a black-box attack < white-box accuracy (min of PGD, FGSM) on the same "
            "images - tol")
    evidence: dict[str, Any] = {"white_box_accuracy": _pct(white), "pgd_accuracy": _pct(acc_p),
                                "fgsm_accuracy": _pct(acc_f), "black_box_accuracy": {},
                                "white_box_reference": {}, "black_box_attacks": {},
                                "surrogate": surrogate_note}
    # name -> (black-box accuracy, white-box accuracy on the same images, images)
    results: dict[str, tuple[float, float, int]] = {}
    if surrogate is not None:
        attack, params = _transfer_from_surrogate(surrogate, s)
        results["transfer-pgd"] = (bench.accuracy(("transfer-pgd",), attack)[0], white, len(bench.y))
        evidence["black_box_attacks"]["transfer-pgd"] = params
    if s.score_n > 0:
        m = min(s.score_n, len(bench.y))
        x_sub, y_sub = _stratified_head(bench.x, bench.y, m)
        x_zoo, params = _score_based(model, x_sub, y_sub, s)
        evidence["black_box_attacks"]["zoo"] = params
        if x_zoo is not None:
            sub = _Bench(model, x_sub, y_sub, s.trials, s.seed, s.batch_size, bench.draws)
            sub_white = min(sub.pgd(s.eps, s.pgd_step_size, s.steps)[0], sub.fgsm(s.eps)[0])
            judged = _Bench(model, x_zoo, y_sub, s.trials, s.seed, s.batch_size, bench.draws)
            results["zoo"] = (judged.clean()[0], sub_white, m)
    if not results:
        reasons = [surrogate_note] + [p["not_measured"] for p in evidence["black_box_attacks"].values()
                                      if "not_measured" in p]
        return AuditItem(2, ITEM_NAMES[2], None, evidence, rule, "not measured: " + "; ".join(reasons))
    failed = []
    parts = []
    for name, (acc, ref, count) in results.items():
        tol = tolerance(acc, ref, count * s.trials, s.z, s.tol_floor)
        evidence["black_box_accuracy"][name] = _pct(acc)
        evidence["white_box_reference"][name] = {"accuracy": _pct(ref), "images": count, "tolerance": _pct(tol)}
        if acc < ref - tol:
            failed.append(name)
        parts.append(f"{name} {100 * acc:.2f}% vs white-box {100 * ref:.2f}% on {count} images "
                     f"(tol {100 * tol:.2f})")
    evidence["stronger_than_white_box"] = failed
    return AuditItem(2, ITEM_NAMES[2], not failed, evidence, rule, "; ".join(parts))


# --- the audit ------------------------------------------------------------------------

def audit(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], eps: float | None = None,
          surrogate: nn.Module | None = None, train_data: Dataset | tuple[Tensor, Tensor] | None = None,
          *, settings: AuditSettings | None = None, label: str = "model",
          device: str | torch.device | None = None, progress: bool = False,
          **overrides: Any) -> AuditReport:
    """Measures the gradient-obfuscation checklist (Table 7) on ``model`` and returns a report.

    ``data``: a pni dataset or an ``(images, labels)`` pair, images in [0, 1]; ``n`` of
    them are used, a class-stratified sample (``pni.data.stratified_indices``, seed 0)
    recorded in ``AuditReport.subset``. ``surrogate`` is the source model of the transfer
    attack of item 2; without it, one is trained on ``train_data`` (``train_surrogate``);
    without either, the transfer part of item 2 is not measured (its score-based part, ZOO,
    runs on ``score_n`` of the images). Other keyword arguments set fields of
    :class:`AuditSettings` (``n``, ``items``, ``steps``, ``eot_ks``, ``prediction_draws``, ...).
    Randomness is seeded from ``seed``: the same call gives the same report.
    """
    s = make_settings(eps, settings, **overrides)
    say = _printer(progress)
    with eval_mode(model):
        x, y, subset = _prepare(model, data, s.n, device)
        torch.manual_seed(s.seed)
        randomized = is_randomized(model, x[: min(len(y), 16)])
        draws = s.prediction_draws if randomized else 1
        bench = _Bench(model, x, y, s.trials, s.seed, s.batch_size, draws, subset)
        clean, _ = bench.clean()
        say(f"audit of {label}: {len(y)} images, eps {s.eps:.4g}, clean {100 * clean:.2f}%, "
            f"randomized: {'yes' if randomized else 'no'}")
        items: dict[int, AuditItem] = {}
        sweeps: dict[str, Sweep] = {}
        for number in s.items:
            say(f"item {number}: {ITEM_NAMES[number]} ...")
            if number == 1:
                items[1] = _item1(bench, s)
            elif number == 2:
                items[2] = _run_item2(model, bench, s, surrogate, train_data, data, x.device, say)
            elif number == 3:
                items[3] = _item3(bench, s)
            elif number == 4:
                items[4] = _item4(model, bench, s, randomized)
            elif number == 5:
                items[5], sweeps["eps"] = _item5(bench, s, label)
            elif number == 6:
                items[6], sweeps["steps"] = _item6(bench, s, label)
            elif number == 7:
                items[7], sweeps["eot"] = _item7(bench, s, randomized, label)
            say(f"item {number}: {items[number].verdict}: {items[number].summary}")
    return AuditReport(label=label, items=[items[k] for k in sorted(items)], settings=s.to_json(),
                       n=len(y), randomized=randomized, clean_accuracy=clean, sweeps=sweeps,
                       subset=subset)


def _run_item2(model: nn.Module, bench: _Bench, s: AuditSettings, surrogate: nn.Module | None,
               train_data: Dataset | tuple[Tensor, Tensor] | None,
               data: Dataset | tuple[Tensor, Tensor], device: torch.device,
               say: Callable[[str], None]) -> AuditItem:
    if surrogate is not None:
        note = "given"
    elif train_data is not None:
        say(f"item 2: training a surrogate ({s.surrogate_epochs} epochs) for the transfer attack ...")
        arch = getattr(model, "arch", None)
        from .models import MODELS
        arch = arch if arch in MODELS else None
        surrogate = train_surrogate(train_data, arch=arch, num_classes=_num_classes(model, data),
                                    epochs=s.surrogate_epochs, n=s.surrogate_train_n,
                                    adversarial=s.surrogate_adversarial, eps=s.eps, seed=s.seed,
                                    device=str(device))
        note = (f"trained by pni: {getattr(surrogate, 'arch', 'model')}, {s.surrogate_epochs} epochs "
                f"{'PGD adversarial' if s.surrogate_adversarial else 'plain'} training on "
                f"{min(_count(train_data), s.surrogate_train_n or 10**12)} images")
    else:
        note = "no surrogate model and no train_data to train one"
    if surrogate is not None:
        surrogate = surrogate.to(device).eval()
    return _item2(model, bench, s, surrogate, note)


def _count(data: Dataset | tuple[Tensor, Tensor]) -> int:
    return len(data) if isinstance(data, Dataset) else len(data[1])


def _printer(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda text: None
    from tqdm.auto import tqdm
    return lambda text: tqdm.write(text)


# --- files ------------------------------------------------------------------------------

def write_audit(report: AuditReport, out_dir: str | Path) -> dict[str, Path]:
    """``audit.json``, ``audit.md`` and the figures (``fig3.png``: accuracy vs eps and vs
    PGD steps; ``eot.png``: accuracy vs EOT samples) in ``out_dir``."""
    from .figures import plot_eot_curve, plot_fig3
    from .report import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    figures: dict[str, str] = {}
    eps_curve = {report.label: report.sweeps["eps"]} if "eps" in report.sweeps else {}
    steps_curve = {report.label: report.sweeps["steps"]} if "steps" in report.sweeps else {}
    if eps_curve or steps_curve:
        plot_fig3(eps_curve, steps_curve, out / "fig3.png", title=f"PGD accuracy: {report.label}")
        paths["fig3"] = out / "fig3.png"
        figures["Fig. 3: accuracy vs eps and vs PGD steps"] = "fig3.png"
    if "eot" in report.sweeps:
        plot_eot_curve({report.label: report.sweeps["eot"]}, out / "eot.png",
                       title=f"EOT-PGD accuracy: {report.label}")
        paths["eot"] = out / "eot.png"
        figures["Accuracy vs EOT samples"] = "eot.png"
    paths["json"] = write_json(report.to_json(), out / "audit.json")
    paths["markdown"] = out / "audit.md"
    paths["markdown"].write_text(report.to_markdown(figures))
    return paths


def load_audit(path: str | Path) -> AuditReport:
    """Reads an ``audit.json`` written by ``write_audit``."""
    import json

    path = Path(path)
    try:
        return AuditReport.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise AuditError(f"cannot read audit file {str(path)!r}: {error}") from error


def audit_checkpoint(path: str | Path, eps: float | None = None, n: int | None = 500,
                     surrogate: str | Path | None = None, train_surrogate_model: bool = True,
                     dataset: str | None = None, data_dir: str | None = None, split: str = "test",
                     device: str = "cpu", progress: bool = False, **overrides: Any) -> AuditReport:
    """Audits a ``pni train`` checkpoint on its own dataset (``split``), eps defaulting to
    the checkpoint's training eps, on ``n`` images (a class-stratified sample, seed 0; None:
    all). The transfer surrogate of item 2 is the checkpoint
    ``surrogate``, else (``train_surrogate_model``) one trained on the training split."""
    from .checkpoint import load_model
    from .data import load_dataset

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise AuditError(f"--n must be a positive number of images, got {n!r}")
    model, checkpoint = load_model(path, device=device)
    config = checkpoint.get("config", {})
    name = dataset or config.get("dataset", "cifar10")
    folder = data_dir or config.get("data_dir")
    data = at_most(load_dataset(name, split, folder), n)
    eps = config.get("eps") if eps is None else eps
    settings = make_settings(eps, **overrides)
    source = None
    train_data = None
    if 2 in settings.items:
        if surrogate is not None:
            source, _ = load_model(surrogate, device=device)
        elif train_surrogate_model:
            train_data = load_dataset(name, "train", folder)
    meta = checkpoint.get("model_meta", {})
    location = (meta.get("noise") or {}).get("location")
    label = f"{meta.get('arch', 'model')} ({'PNI-' + location if location else 'no noise'})"
    return audit(model, data, settings=settings, surrogate=source, train_data=train_data,
                 label=label, device=device, progress=progress)
