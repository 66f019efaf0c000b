"""``docs/RESULTS.md`` from a results folder (``pni reproduce NAME --report``): per plan and
track, the paper's number next to ours (mean±std over trials), the honest counterparts
(EOT-PGD, AutoAttack-rand) next to the paper-protocol PGD, "not run yet" where a step has
no result; then the verdicts on the paper's claims (``pni.reproduce.claims``). Never typed
by hand: every number comes from ``paper_numbers`` or from the step folders."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..reports.json_io import write_text
from ..reports.markdown import md_table
from . import paper_numbers as paper
from .claims import judge_claims
from .plans import Plan
from .runner import OUTPUTS, state
from .scales import tracks
from .verdicts import Measure, measure, metric

NOT_RUN = "not run yet"
SETTING_TITLES = {"with_noise": "with noise", "without_noise": "without noise"}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Results:
    """What ``out`` holds for ``plans`` at ``scale``: ``get(plan, row, track, what)`` gives a
    step's JSON (``what``: an eval protocol, "transfer", "audit", "alphas", "certify") or the
    train step's ``config.json`` ("config"); None when not done."""

    def __init__(self, plans: list[Plan], scale: str, out: str | Path) -> None:
        from .plans import resolve

        self.plans, self.scale, self.out = plans, scale, Path(out)
        self.found: dict[tuple[str, str, str, str], Any] = {}
        for step in resolve(plans, scale):
            if step.kind == "train":
                value = _read(self.out / step.key / "config.json")
                what = "config"
            else:
                if step.kind not in OUTPUTS or state(step, self.out)[0] != "done":
                    continue
                value = _read(self.out / step.key / OUTPUTS[step.kind].replace(".png", ".json"))
                what = step.settings.get("protocol", step.kind)
                if step.kind == "alphas":
                    value = {"json": value, "png": str(self.out / step.key / "alphas.png")}
            if value is None:
                continue
            for label in step.rows:
                plan_name, row_id = label.split(":", 1)
                self.found[(plan_name, row_id, step.track, what)] = value

    def get(self, plan: str, row: str, track: str, what: str) -> Any:
        return self.found.get((plan, row, track, what))

    def has_any(self, plan: str, track: str) -> bool:
        return any(k[0] == plan and k[2] == track and k[3] != "config" for k in self.found)


# --- the paper's numbers per plan row ------------------------------------------------------
def _table3_key(row_id: str) -> tuple[str, str]:
    for scheme in ("none", "vanilla", "pni-w"):
        if row_id.endswith("-" + scheme):
            return row_id[: -len(scheme) - 1], scheme
    return row_id, ""


def paper_cells(plan: str, row_id: str, setting: str) -> dict[str, paper.Value]:
    """The paper's clean / PGD / FGSM for a row in a noise setting ({} where it reports none)."""
    if plan == "table1":
        return paper.TABLE1.get(row_id, {}) if setting == "with_noise" else {}
    if plan == "table2":
        return paper.TABLE2.get(row_id, {}).get(setting, {})
    if plan == "table3":
        tag, scheme = _table3_key(row_id)
        return paper.TABLE3.get(tag, {}).get(scheme, {}).get(setting, {})
    if plan == "table6":
        noisy = row_id == "pni-w"
        return paper.TABLE6.get(row_id, {}) if (setting == "with_noise") == noisy else {}
    return {}


def _paper(value: paper.Value | None) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:.2f}±{std:.2f}" if std is not None else f"{mean:.2f}"


def _ours(m: Measure | None, ran: bool) -> str:
    return m.cell() if m is not None else ("-" if ran else NOT_RUN)


def _settings(results: Results, plan: Plan, row: Any, track: str) -> list[str]:
    found = results.get(plan.name, row.id, track, "paper")
    if found:
        return [s for s in ("with_noise", "without_noise") if s in found.get("accuracy_percent", {})]
    noisy = getattr(row.specs[0], "location", None) is not None
    return ["with_noise", "without_noise"] if noisy else ["without_noise"]


def accuracy_table(results: Results, plan: Plan, track: str) -> str:
    """Tables 1, 2, 3, 6: per row and noise setting, the paper's clean / PGD / FGSM next to
    ours, and our EOT-PGD and AutoAttack-rand (the 'honest' protocol) next to the PGD."""
    header = ["Row", "Test", "Clean: paper", "Clean: ours", "PGD: paper", "PGD: ours", "FGSM: paper",
              "FGSM: ours", "EOT-PGD: ours", "AA-rand: ours"]
    lines = []
    for row in plan.rows:
        ours = results.get(plan.name, row.id, track, "paper")
        honest = results.get(plan.name, row.id, track, "honest")
        for setting in _settings(results, plan, row, track):
            cells = paper_cells(plan.name, row.id, setting)
            line = [row.label, SETTING_TITLES[setting]]
            for attack in ("clean", "pgd", "fgsm"):
                line += [_paper(cells.get(attack)), _ours(measure(ours, setting, attack), ours is not None)]
            wants_honest = any(getattr(s, "protocol", None) == "honest" for s in row.specs)
            for attack in ("eot-pgd", "aa-rand"):
                line.append(_ours(measure(honest, setting, attack), honest is not None) if wants_honest else "-")
            lines.append(line)
    return md_table(header, lines)


def cw_table(results: Results, plan: Plan, track: str) -> str:
    lines = []
    for row in plan.rows:
        cells = [row.label, f"{paper.TABLE4[row.id]:.2f}" if row.id in paper.TABLE4 else "-"]
        for protocol in ("cw-paper", "cw-strong"):
            found = results.get(plan.name, row.id, track, protocol)
            l2, rate = metric(found, "cw", "mean_l2"), metric(found, "cw", "success_rate")
            cells += [_ours(l2, found is not None) if l2 is None else f"{l2.mean:.3f}",
                      _ours(rate, found is not None)]
        lines.append(cells)
    return md_table(["Row", "Mean L2: paper", "Mean L2: ours, paper profile", "Success %: paper profile",
                     "Mean L2: ours, strong profile", "Success %: strong profile"], lines)


def transfer_measures(found: dict[str, Any] | None) -> tuple[Measure | None, Measure | None]:
    """(A => B, B => A) accuracies from a ``transfer.json`` whose first model is A."""
    if not found or len(found.get("models", [])) < 2:
        return None, None
    a, b = found["models"][:2]
    acc, trials, n = found["accuracy_percent"], int(found.get("trials", 1)), found.get("n")

    def one(source: str, target: str) -> Measure:
        stats = acc[source][target]
        return Measure(float(stats["mean"]), float(stats.get("std", 0.0)), trials, n)
    return one(a, b), one(b, a)


def blackbox_table(results: Results, plan: Plan, track: str) -> str:
    lines = []
    for row in plan.rows:
        nums = paper.TABLE5.get(row.id, {})
        found = results.get(plan.name, row.id, track, "transfer")
        wants_transfer = any(type(s).__name__ == "Transfer" for s in row.specs)
        ab, ba = transfer_measures(found)
        zoo = results.get(plan.name, row.id, track, "zoo")
        line = [row.label]
        for key, ours in (("a=>b", ab), ("b=>a", ba)):
            line += [_paper(nums.get(key)), _ours(ours, found is not None) if wants_transfer else "-"]
        line += [_paper(nums.get("zoo")), _ours(metric(zoo, "zoo", "success_rate"), zoo is not None)]
        lines.append(line)
    return md_table(["Row", "A⇒B: paper", "A⇒B: ours", "B⇒A: paper", "B⇒A: ours", "ZOO success %: paper",
                     "ZOO success %: ours"], lines)


def audit_table(results: Results, plan: Plan, track: str) -> str:
    lines = []
    for row in plan.rows:
        found = results.get(plan.name, row.id, track, "audit")
        items = {int(i["number"]): i for i in (found or {}).get("items", [])}
        numbers = sorted(set(paper.TABLE7) | set(items)) if plan.name == "table7" else sorted(items)
        if not numbers:
            lines.append([row.label, "-", "-", "-", NOT_RUN])
        for number in numbers:
            item = items.get(number)
            name = item["name"] if item else paper.TABLE7[number][0]
            ours = (item.get("verdict", "-") + (f": {item['summary']}" if item.get("summary") else "")) \
                if item else (NOT_RUN if found is None else "not measured")
            lines.append([row.label, number, name,
                          paper.TABLE7[number][1] if plan.name == "table7" and number in paper.TABLE7 else "-",
                          ours])
    return md_table(["Row", "Item", "Check", "Paper", "Ours"], lines)


def figure_lines(results: Results, plan: Plan, track: str, root: Path) -> str:
    lines = []
    for row in plan.rows:
        found = results.get(plan.name, row.id, track, "alphas")
        if found:
            path = Path(found["png"])
            try:
                path = path.resolve().relative_to(root.resolve())
            except ValueError:
                pass
            lines.append(f"- {row.label}: ![alpha per layer]({path})")
        else:
            lines.append(f"- {row.label}: {NOT_RUN}")
    return "\n".join(lines) + "\n"


TABLES = {"table1": accuracy_table, "table2": accuracy_table, "table3": accuracy_table,
          "table6": accuracy_table, "table4": cw_table, "table5": blackbox_table,
          "table7": audit_table, "fig3": audit_table}


def track_header(results: Results, plan: Plan, track: Any) -> str:
    configs = [c for (p, _, t, w), c in results.found.items() if p == plan.name and t == track.name and w == "config"]
    budget = ""
    if configs:
        c = configs[0]
        subset = f"{c.get('train_subset')} training images" if c.get("train_subset") else "full training set"
        budget = (f" Run config: {c.get('dataset')}, {subset}, {c.get('epochs')} epochs, PGD-{c.get('steps')} "
                  f"eps {c.get('eps', 0):.4g} step {c.get('step_size', 0):g}, eval subset "
                  f"{c.get('eval_subset') or 'all'}.")
    caveat = (" The paper's numbers are CIFAR-10 ResNet numbers: on this track compare directions, "
              "not values.") if track.model else ""
    return f"**Track {track.name}** ({track.note}).{budget}{caveat}\n"


def render(plans: list[Plan], scale: str, out: str | Path, root: str | Path = ".") -> str:
    """The whole report as Markdown."""
    results = Results(plans, scale, out)
    parts = [f"# Reproduction results ({scale} scale)\n",
             f"Generated by `pni reproduce {' '.join(p.name for p in plans) if len(plans) < 9 else 'all'} "
             f"--scale {scale} --report` from `{out}`; do not edit by hand. Paper numbers: He, Rakin, Fan, "
             f"CVPR 2019 (`pni.reproduce.paper_numbers`). Ours: mean±std over trials (one trial: the mean); "
             f"accuracies in %. EOT-PGD and AA-rand are the honest counterparts of the paper's PGD "
             f"(expectation over the noise; AutoAttack's randomized version).\n",
             "Tracks at this scale:\n",
             "\n".join(f"- **{t.name}**: {t.note}" for t in tracks(scale)) + "\n"]
    for plan in plans:
        parts.append(f"## {plan.title}\n")
        if plan.notes:
            parts.append(f"_{plan.notes}_\n")
        for track in tracks(scale):
            if not any(track.adapt(r.specs[0], plan.name) is not None for r in plan.rows):
                continue
            parts.append(track_header(results, plan, track))
            if plan.name == "fig2":
                parts.append(figure_lines(results, plan, track.name, Path(root)))
            else:
                parts.append(TABLES[plan.name](results, plan, track.name))
    parts.append("## Verdicts on the paper's claims\n")
    parts.append("Each verdict: *holds* (our difference in the claimed direction exceeds two standard "
                 "errors), *does not hold at this scale* (it exceeds them the other way), *inconclusive* "
                 "(within two standard errors). Standard error: std/sqrt(trials), or with one trial the "
                 "binomial error on the n images.\n")
    for track in tracks(scale):
        verdicts = judge_claims(results, track.name, {p.name for p in plans})
        if verdicts:
            parts.append(f"**Track {track.name}**\n\n" + "\n".join(v.line() for v in verdicts) + "\n")
    return "\n".join(parts)


def write_results(plans: list[Plan], scale: str, out: str | Path, path: str | Path = "docs/RESULTS.md") -> Path:
    """Renders the report of ``plans`` from ``out`` and writes it to ``path`` (atomically)."""
    path = Path(path)
    return write_text(render(plans, scale, out, root=path.parent), path, what="results report")
