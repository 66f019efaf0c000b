"""The audit's results as data: a checklist item, a sweep, the report, and their JSON.

Nothing here measures or renders: ``pni.auditing.bench`` / ``checks`` fill these, and
``pni.reports.audit`` turns them into Markdown, figures and files.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .settings import ITEM_NAMES


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
