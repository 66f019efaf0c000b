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

from ..settings import is_fraction, is_int
from ..errors import PNIError
from ..settings import option
from ..attacks.budget import madry_step_size

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

    # Fields with flag=False have no `pni audit` flag (eps and n: their own flags there).
    eps: float = option(help="L-inf radius audited", flag=False)
    n: int | None = option(None, "a class-stratified sample of n images (None: all)", flag=False)
    items: tuple[int, ...] = option(ALL_ITEMS, "comma-separated checklist items to run, 1-7",
                                    default_text="all")
    steps: int = option(20, "PGD steps of items 1, 2, 4, 5, 7")
    step_size: float | None = option(None, "PGD step size", default_text="2.5 * eps / steps")  # Madry et al.
    trials: int = option(1, "seeds per accuracy")      # noise and random starts
    seed: int = option(0, "random seed")
    batch_size: int = option(256, "batch size")
    z: float = option(2.0, "noise tolerance, in binomial standard errors", flag=False)
    tol_floor: float = option(0.01, "smallest tolerance (accuracy fraction)", flag=False)
    eps_values: tuple[float, ...] | None = option(None, "item 5 / Fig. 3 top: eps values",
                                                  default_text="eps x 0,0.25,0.5,1,1.5,2, at most 1")
    unbounded_eps: float = option(1.0, "item 3: the unbounded attack's eps", flag=False)
    unbounded_steps: int = option(100, "item 3: PGD steps at eps 1")
    unbounded_step_size: float = option(0.1, "item 3: PGD step size", flag=False)
    max_unbounded_accuracy: float = option(0.02, "item 3: accuracy above which it fails", flag=False)
    random_samples: int = option(1000, "item 4: random points per image")
    random_n: int = option(100, "item 4: images searched at random")  # a stratified sample of the n
    random_candidates: int = option(5, "item 4: lowest-margin points re-checked per image", flag=False)
    confirm_draws: int = option(9, "item 4: noise draws judging a point (randomized)", flag=False)
    votes: int = option(10, "noise draws every attacked image is judged over (randomized model)",
                        flag=False)
    max_random_fraction: float = option(0.01, "item 4: fraction of points found above which it fails",
                                        flag=False)
    steps_values: tuple[int, ...] = option((10, 20, 50, 100), "item 6 / Fig. 3 bottom: PGD steps")
    eot_ks: tuple[int, ...] = option((1, 2, 5, 10, 20, 30), "item 7: EOT samples per gradient")
    eot_plateau: int = option(2, "item 7: plateau = min over the last ks (not k=1)", flag=False)
    max_eot_drop: float = option(0.05, "item 7: flag when EOT takes more accuracy than this fraction")
    surrogate_epochs: int = option(5, "item 2: epochs of the surrogate trained by pni")
    surrogate_train_n: int | None = option(10000, "item 2: training images of that surrogate")
    surrogate_adversarial: bool = option(False, "item 2: train the surrogate adversarially", flag=False)
    score_n: int = option(100, "item 2: images attacked by ZOO, score-based (0: none)")
    score_queries: int = option(20000, "item 2: ZOO queries per image")
    score_coords: int = option(128, "item 2: ZOO coordinates per iteration", flag=False)
    score_lr: float | None = option(None, "item 2: ZOO's Adam step", default_text="max(0.01, eps / 4)",
                                    flag=False)

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
            if not is_int(value, minimum):
                raise bad(name, f"an integer >= {minimum}")

        def check_fraction(name: str, low_open: bool = True, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if not is_fraction(value, low_open):
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
                              ("confirm_draws", 1), ("votes", 1), ("eot_plateau", 1), ("surrogate_epochs", 1),
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
            if len(values) < 2 or any(not is_fraction(e, low_open=False) for e in values):
                raise bad("eps_values", "at least two numbers in [0, 1]")
        for name, minimum in (("steps_values", 1), ("eot_ks", 1)):
            values = tuple(getattr(self, name))
            if len(values) < 2 or any(not is_int(v, minimum) for v in values):
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
