"""What a stopped or still-running evaluation has finished, read from its partial file
(``pni.evaluation.resume``) as an ``Evaluation`` of its finished attacks only.

An attack's outcomes enter the partial file once all its trials are done, and a resumed
evaluation reuses them as they are: they are the numbers the finished evaluation will report.
The attack still running, and those after it, are absent; the per-image worst case of a noise
setting appears only once every attack of that setting is done. ``pni reproduce --report``
shows such numbers marked as coming from a step still to finish.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evaluator import label_attacks
from .result import WORST_CASE, Evaluation
from .resume import read_partial, recorded_progress


@dataclass(frozen=True)
class PartialEvaluation:
    """The finished attacks of an evaluation (``evaluation``), the share of its work done
    (0-1), the wall seconds it has run, and the code that last wrote its partial file."""

    evaluation: Evaluation
    share_done: float
    seconds: float
    code: dict[str, Any] | None

    def line(self) -> str:
        """One line: the accuracies of the finished attacks (mean over trials and draws, %)
        per noise setting, and the share of the work done."""
        settings = "; ".join(f"{setting.replace('_', ' ')}: " + ", ".join(
            f"{name} {stats['mean']:.2f} %" for name, stats in per_attack.items())
            for setting, per_attack in self.evaluation.summary().items())
        return f"finished so far ({100 * self.share_done:.0f} % of the work): {settings}"

    def to_json(self) -> dict[str, Any]:
        """``results.json``'s fields for the finished attacks, with ``"partial"``: the share
        done and the wall seconds so far (and ``"code"`` when recorded)."""
        out = self.evaluation.to_json()
        out["partial"] = {"share_done": self.share_done, "seconds": self.seconds}
        if self.code is not None:
            out["code"] = self.code
        return out


def partial_evaluation(path: str | Path) -> PartialEvaluation | None:
    """The finished attacks a partial file holds; None when it cannot be read, has finished
    nothing yet, or was written before partial files recorded their evaluation's head."""
    saved = read_partial(path)
    if saved is None or not isinstance(saved.get("head"), str):
        return None
    try:
        head = json.loads(saved["head"])
        done = saved.get("done") or {}
        result = Evaluation(attacks=dict(head["attacks"]), trials=int(head["trials"]),
                            seeds=[int(s) for s in head["seeds"]], n=int(head["n"]), votes=int(head["votes"]),
                            subset=head.get("subset"), labels_sha256=head.get("labels_sha256"),
                            randomized=head.get("randomized"))
        worst_case_over = list(head.get("worst_case_over") or [])
        for setting in head["settings"]:
            finished = [name for name in head["order"] if name in done.get(setting, {})]
            for name in finished:
                result.record(setting, name, done[setting][name])
            if worst_case_over and len(finished) == len(head["order"]):
                result.add_worst_case(setting, worst_case_over)
        if not result.accuracies:
            return None
        with_worst_case = any(WORST_CASE in per_attack for per_attack in result.accuracies.values())
        label_attacks(result, worst_case_over if with_worst_case else [], head.get("chain") or [])
        progress = recorded_progress(saved) or (0.0, 0.0)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a head this code cannot read: nothing to show, the resume is unaffected
    return PartialEvaluation(result, progress[0], progress[1], head.get("code"))
