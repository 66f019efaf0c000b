"""Several runs in one report (``pni report RUN_DIR...``): reading a run folder
(``RunRecord``, ``load_run``), the Table 7 verdict matrix and ``report.md`` laid out like the
paper (the runs, Table 1, Fig. 2, Table 2, Table 7, Fig. 3, the EOT curve)."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import AUDIT, AUDIT_FOLDER, CONFIG, EVAL_FOLDER, RESULTS, TRAIN_LOG, checkpoint_path
from ..auditing.result import TOLERANCE_RULE, AuditReport
from ..auditing.settings import ITEM_NAMES
from ..errors import PNIError
from ..evaluation.result import Evaluation
from .evaluation import attack_parameters_table, attack_title, evaluation_table
from .figures import alpha_table, plot_alpha_history, plot_eot_curve, plot_fig3
from ..files import write_text
from .markdown import format_cell, md_table


class ReportError(PNIError):
    """A run folder that cannot be reported (missing, or holding unreadable files)."""


@dataclass
class RunRecord:
    """What one run folder holds: ``config.json``, ``train_log.jsonl``, ``checkpoint.pt``,
    ``eval/results.json`` (``pni eval``) and ``audit/audit.json`` (``pni audit``)."""

    name: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluation: Evaluation | None = None
    audit: AuditReport | None = None
    checkpoint: Path | None = None

    def description(self) -> dict[str, str]:
        cfg = self.config
        location = cfg.get("location")
        return {"Model": str(cfg.get("model", "-")),
                "Noise": f"PNI-{location}" if location else ("none" if cfg else "-"),
                "Dataset": str(cfg.get("dataset", "-")),
                "Epochs": str(self.history[-1]["epoch"]) if self.history else "-",
                "Training eps": f"{cfg['eps']:.4g}" if isinstance(cfg.get("eps"), (int, float)) else "-"}

    def layer_labels(self) -> dict[str, str]:
        """Table 1's labels (Conv0, Conv1.0, ..., FC) for this run's architecture."""
        from ..models import create_model, layer_labels

        try:
            model = create_model(self.config["model"], width=self.config.get("width", 1.0))
        except (KeyError, ValueError):
            return {}
        return layer_labels(model)


def _parsed(path: Path, parse: Callable[[str], Any], what: str) -> Any:
    """``parse(text of path)``; a file that does not parse is a one-line ReportError."""
    try:
        return parse(path.read_text())
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise ReportError(f"{str(path)!r} is not {what}: {error}") from error


def _jsonl(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_run(run_dir: str | os.PathLike, name: str | None = None) -> RunRecord:
    """Reads a run folder written by ``pni train`` (+ ``pni eval``, ``pni audit``)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"run folder {str(path)!r} does not exist")
    record = RunRecord(name=name or path.resolve().name, path=path)
    readers = (("config", CONFIG, json.loads, "a config (JSON)"),
               ("history", TRAIN_LOG, _jsonl, "a training log (JSON lines)"),
               ("evaluation", f"{EVAL_FOLDER}/{RESULTS}", lambda t: Evaluation.from_json(json.loads(t)),
                "an evaluation written by pni eval"),
               ("audit", f"{AUDIT_FOLDER}/{AUDIT}", lambda t: AuditReport.from_json(json.loads(t)),
                "an audit written by pni audit"))
    found = False
    for attr, name_, parse, what in readers:
        if (path / name_).exists():
            setattr(record, attr, _parsed(path / name_, parse, what))
            found = True
    if checkpoint_path(path).exists():
        record.checkpoint = checkpoint_path(path)
        found = True
    if not found:
        raise ReportError(f"run folder {str(path)!r} holds none of config.json, train_log.jsonl, "
                          f"checkpoint.pt, eval/results.json, audit/audit.json")
    return record


def _unique_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = Path(p).resolve().name or str(p)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def audit_matrix(runs: Sequence[RunRecord]) -> str:
    """The Table 7 checklist for several runs: one row per item, one verdict column per run,
    then each item's rule."""
    audited = [r for r in runs if r.audit is not None]
    numbers = sorted({item.number for r in audited for item in r.audit.items})
    rows = []
    rules: dict[int, str] = {}
    for number in numbers:
        cells = [str(number), ITEM_NAMES.get(number, str(number))]
        for r in audited:
            item = next((i for i in r.audit.items if i.number == number), None)
            if item is None:
                cells.append("-")
            else:
                cells.append(f"**{item.verdict}**" if item.passed is False else item.verdict)
                rules.setdefault(number, item.rule)
        rows.append(cells)
    lines = [f"- Rule {n} (fails when): {rules[n]}" for n in numbers if n in rules]
    return md_table(["#", "Check", *(r.name for r in audited)], rows) + "\n" + "\n".join(lines) + "\n"


def write_runs_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      title: str = "PNI runs") -> dict[str, Path]:
    """One Markdown report for several runs, laid out like the paper: the runs, Table 1
    (alpha per layer), Fig. 2 (alpha over epochs), Table 2 (accuracy under attack, noise on
    and off), Table 7 (the audit, with its evidence and rules), Fig. 3 (accuracy vs eps and
    vs PGD steps) and the EOT curve. Figures are PNGs next to ``report.md``."""
    if not run_dirs:
        raise ReportError("no run folders given")
    runs = [load_run(p, name) for p, name in zip(run_dirs, _unique_names(run_dirs))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    md = [f"# {title}", "", "## Runs", ""]
    rows = []
    for r in runs:
        last = r.history[-1] if r.history else {}
        metric = (f"{100 * last['test_clean_acc']:.2f} / {100 * last.get('test_pgd_acc', float('nan')):.2f}"
                  if "test_clean_acc" in last else "-")
        rows.append([r.name, *r.description().values(), metric])
    md += [md_table(["Run", "Model", "Noise", "Dataset", "Epochs", "Training eps", "Last epoch clean / PGD (%)"],
                    rows)]

    with_alphas = [r for r in runs if r.history and r.history[-1].get("alphas")]
    if with_alphas:
        labels: dict[str, str] = {}
        for r in with_alphas:
            labels.update(r.layer_labels())
        footer: dict[str, dict[str, str]] = {}
        for r in with_alphas:
            if r.evaluation is None:
                continue
            setting = "with_noise" if "with_noise" in r.evaluation.accuracies else "without_noise"
            for attack, stats in r.evaluation.summary().get(setting, {}).items():
                row = attack_title(attack)
                footer.setdefault(row, {})[r.name] = format_cell(stats, r.evaluation.trials)
        md += ["## Table 1: noise scale alpha per layer (last epoch)", "",
               alpha_table({r.name: r.history[-1]["alphas"] for r in with_alphas}, labels, footer)]
        if footer:
            md += ["Bottom rows: accuracy (%) under attack with the noise on (`pni eval`).", ""]
        md += ["## Fig. 2: alpha of each layer over training", ""]
        for r in with_alphas:
            png = out / f"fig2_{r.name}.png"
            plot_alpha_history(r.history, png, r.layer_labels(), title=f"{r.name}: alpha per layer")
            paths[f"fig2_{r.name}"] = png
            md += [f"![{r.name}: alpha per layer over epochs]({png.name})", ""]

    evaluated = [r for r in runs if r.evaluation is not None]
    if evaluated:
        md += ["## Table 2: accuracy under attack (%), mean±std over trials", "",
               evaluation_table([(r.name, r.evaluation) for r in evaluated]), "Attack settings:", ""]
        for r in evaluated:
            md += [f"*{r.name}* ({r.evaluation.n} images, {r.evaluation.trials} trials):", "",
                   attack_parameters_table(r.evaluation)]

    audited = [r for r in runs if r.audit is not None]
    if audited:
        md += ["## Table 7: gradient-obfuscation audit", "",
               "Items 1-5: the checklist of Athalye et al. (2018) as in the paper's Table 7; "
               "6-7 go beyond the paper (`pni audit`).", "", audit_matrix(audited)]
        md += [f"Noise tolerance: {TOLERANCE_RULE}.", "", "Evidence:", ""]
        for r in audited:
            md += [f"*{r.name}* ({r.audit.n} images, eps {r.audit.settings.get('eps', float('nan')):.4g}): "
                   f"{r.audit.verdict()}.", ""]
            md += [f"- {item.number}. {item.name}: {item.verdict}: {item.summary}" for item in r.audit.items]
            md.append("")
        eps_curves = {r.name: r.audit.sweeps["eps"] for r in audited if "eps" in r.audit.sweeps}
        steps_curves = {r.name: r.audit.sweeps["steps"] for r in audited if "steps" in r.audit.sweeps}
        if eps_curves or steps_curves:
            plot_fig3(eps_curves, steps_curves, out / "fig3.png")
            paths["fig3"] = out / "fig3.png"
            md += ["## Fig. 3: accuracy vs eps (top) and vs PGD steps (bottom)", "",
                   "![accuracy vs eps and vs PGD steps](fig3.png)", ""]
        eot_curves = {r.name: r.audit.sweeps["eot"] for r in audited if "eot" in r.audit.sweeps}
        if eot_curves:
            plot_eot_curve(eot_curves, out / "eot.png")
            paths["eot"] = out / "eot.png"
            md += ["## Accuracy vs EOT samples", "",
                   "A curve that keeps falling as k grows: single-draw PGD overstated the robustness.", "",
                   "![accuracy vs EOT samples](eot.png)", ""]
    paths["markdown"] = write_text("\n".join(md) + "\n", out / "report.md")
    return paths
