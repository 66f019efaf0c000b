"""The audit's settings: every knob with its default rule, validated in one place.

``ITEM_NAMES`` is the catalogue of the checklist items (the paper's Table 7, items 1-5,
after Athalye et al. 2018; 6 and 7 go beyond the paper); ``AuditSettings`` holds every
number the audit's rules use, and ``make_settings`` builds a validated one from keyword
overrides (``AuditError`` names the bad setting and its flag).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import PNIError
from ..runs import madry_step_size

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


class AuditError(PNIError):
    """A bad audit argument (eps, items, sample counts, ...); the message names it."""


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
        return madry_step_size(self.eps, self.steps)

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
