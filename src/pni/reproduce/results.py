"""The one reader of a ``pni reproduce`` results folder: ``Results`` maps (plan, row, track,
what) to what the step folders hold (their files named by ``pni.runs``), a step's earlier
honest evaluation that a re-run at another budget has not yet replaced (``superseded_honest``),
and the finished attacks of an eval step still to finish (``unfinished_evaluation``).
Reports, verdicts and tables read the folder through it; the runner's own bookkeeping
(``step.json``, done or not) is ``runner.state``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..provenance import without_code
from ..runs import (
    ALPHAS_FIGURE,
    CHECK,
    OUTPUTS,
    PARTIAL_EVALUATION,
    RESULTS,
    read_config,
    read_output,
    read_step_record,
    read_train_log,
)
from .claims_alpha import INIT_ALPHA
from .plans import Plan
from .results_check import checked_alphas, output_ok
from .runner import state


def _final_alphas(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The last logged epoch's alphas of a run, with its epoch, planned epochs and initial alpha."""
    last = next((r for r in reversed(read_train_log(folder)) if r.get("alphas")), None)
    alphas = None if last is None else checked_alphas(folder, last)  # the checkpoint's, not the log's
    if alphas is None:
        return None
    return {"epoch": last.get("epoch"), "epochs": config.get("epochs"), "alphas": alphas,
            "init_alpha": config.get("init_alpha", INIT_ALPHA)}


def superseded_honest(run: Path, current: str) -> dict[str, Any] | None:
    """Until a run's honest evaluation at the plan's budget lands, the earlier one of the same
    run (another budget: its attacks' recorded parameters say which, and every column and
    verdict built on it names that budget, ``pni.attacks.budget``) whose files still check out,
    the one on most images; marked ``"superseded"`` (its folder) so the tables can say so."""
    found = []
    for folder in run.glob("eval-honest-*"):
        recorded = read_step_record(folder)
        if folder.name == current or not isinstance(recorded, dict) or recorded.get("protocol") != "honest":
            continue
        if not (folder / RESULTS).is_file() or not output_ok(folder, RESULTS, without_code(recorded)):
            continue
        value = read_output(folder, RESULTS)
        if isinstance(value, dict):
            found.append((int(value.get("n") or 0), folder.name, value))
    if not found:
        return None
    _, name, value = max(found, key=lambda item: (item[0], item[1]))
    return {**value, "superseded": name}


def unfinished_evaluation(folder: Path) -> dict[str, Any] | None:
    """The attacks an eval step still to finish has finished (its partial file, read by
    ``pni.evaluation.partial``), as its ``results.json`` will hold them, marked ``"partial"``
    (share of the step's work done, wall seconds so far): the tables mark those cells and show
    the rest as still running."""
    from ..evaluation.partial import partial_evaluation

    found = partial_evaluation(folder / PARTIAL_EVALUATION)
    return None if found is None else found.to_json()


class Results:
    """What ``out`` holds for ``plans`` at ``scale``: ``get(plan, row, track, what)`` gives a
    step's JSON (``what``: an eval protocol, "transfer", "audit", "alphas", "certify",
    "substitute"), the train step's ``config.json`` ("config") or its last logged alphas
    ("alphas_final"); None when not done. ``key`` and ``folder`` give the step's key and folder
    (done or not; None where the plan has no such step on that track)."""

    def __init__(self, plans: list[Plan], scale: str, out: str | Path, data_dir: str | None = None) -> None:
        from .plans import resolve

        self.plans, self.scale, self.out = plans, scale, Path(out)
        self.found: dict[tuple[str, str, str, str], Any] = {}
        self.keys: dict[tuple[str, str, str, str], str] = {}
        for step in resolve(plans, scale, data_dir=data_dir):
            folder = self.out / step.key
            whats = ("config", "alphas_final") if step.kind == "train" else (step.settings.get("protocol", step.kind),)
            values: dict[str, Any] = {}
            if step.kind == "train":
                config = read_config(folder)
                if config is not None:
                    values = {"config": config, "alphas_final": _final_alphas(folder, config)}
            elif step.kind in OUTPUTS and state(step, self.out)[0] == "done":
                value = read_output(folder, OUTPUTS[step.kind].replace(".png", ".json"))
                if step.kind == "alphas" and value is not None:
                    value = {"json": value, "png": str(folder / ALPHAS_FIGURE)}
                values = {whats[0]: value}
            elif step.kind == "eval":
                found = superseded_honest(self.out / step.needs[0], folder.name) if whats[0] == "honest" else None
                values = {whats[0]: found if found is not None else unfinished_evaluation(folder)}
            for label in step.rows:
                plan_name, row_id = label.split(":", 1)
                for what in whats:
                    self.keys[(plan_name, row_id, step.track, what)] = step.key
                    if values.get(what) is not None:
                        self.found[(plan_name, row_id, step.track, what)] = values[what]

    def get(self, plan: str, row: str, track: str, what: str) -> Any:
        return self.found.get((plan, row, track, what))

    def seeds(self, plan: str, row: str, track: str, what: str) -> list[Any]:
        """The step JSON of every training seed of a row (seed 0 first) that is done (a step
        still to finish is left out: statistics over seeds take finished steps only)."""
        from .plans import seeded_id

        found = next((r for p in self.plans if p.name == plan for r in p.rows if r.id == row), None)
        count = found.seed_count(track) if found is not None else 1
        values = [self.get(plan, seeded_id(row, k), track, what) for k in range(count)]
        return [v for v in values if v is not None and not (isinstance(v, dict) and v.get("partial"))]

    def seed_count(self, plan: str, row: str, track: str) -> int:
        found = next((r for p in self.plans if p.name == plan for r in p.rows if r.id == row), None)
        return found.seed_count(track) if found is not None else 1

    def key(self, plan: str, row: str, track: str, what: str) -> str | None:
        return self.keys.get((plan, row, track, what))

    def folder(self, plan: str, row: str, track: str, what: str) -> Path | None:
        key = self.key(plan, row, track, what)
        return self.out / key if key is not None else None

    def certificate_check(self, plan: str, row: str, track: str) -> dict[str, Any] | None:
        """The certify step's cross-check (``check.json``) of a row, None when there is none."""
        folder = self.folder(plan, row, track, "certify")
        found = read_output(folder, CHECK) if folder is not None else None
        return found if isinstance(found, dict) else None

    def has_any(self, plan: str, track: str) -> bool:
        return any(k[0] == plan and k[2] == track and k[3] not in ("config", "alphas_final") for k in self.found)
