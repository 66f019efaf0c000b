"""The audit as files: its Markdown report (verdict, checklist table, sweep tables),
``audit.json`` and the figures (Fig. 3, the EOT curve), and reading ``audit.json`` back.
The data is ``pni.auditing.result``; ``pni.audit`` re-exports these names."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..runs import AUDIT
from ..auditing.result import TOLERANCE_RULE, AuditReport, Sweep
from ..auditing.settings import AuditError
from .figures import plot_eot_curve, plot_fig3
from ..provenance import with_code
from ..files import write_json, write_text
from .markdown import format_settings, format_value, md_table

SWEEP_TITLES = {"eps": "Accuracy vs eps (Fig. 3, top)", "steps": "Accuracy vs PGD steps (Fig. 3, bottom)",
                "eot": "Accuracy vs EOT samples"}
SWEEP_COLUMNS = {"eps": "eps", "steps": "PGD steps", "eot": "EOT samples"}


def audit_markdown(report: AuditReport, figures: Mapping[str, str] | None = None) -> str:
    """The report: verdict, the checklist table (evidence and rule per item), the sweeps."""
    s = report.settings
    lines = [f"# Gradient-obfuscation audit: {report.label}", "",
             f"{report.n} images{_subset_note(report.subset)}, eps {s.get('eps', float('nan')):.4g}, {s.get('trials', 1)} trial(s) "
             f"from seed {s.get('seed', 0)}; clean accuracy {100 * report.clean_accuracy:.2f}%. "
             "Model randomized: " + ("yes (two forward passes of the same images differ); "
                                     "measured as it is used, noise on." if report.randomized else
                                     "no (two forward passes of the same images agree)."), "",
             f"**Verdict: {report.verdict()}.**", "",
             "Items 1-5 are the checklist of Athalye et al. (2018) as in the paper's Table 7; "
             "6 and 7 go beyond the paper.", ""]
    rows = [[item.number, item.name, f"**{item.verdict}**" if item.passed is False else item.verdict,
             item.summary, item.rule] for item in report.items]
    lines += [md_table(["#", "Check", "Verdict", "Evidence", "Rule (fails when)"], rows).rstrip("\n")]
    lines += ["", f"Noise tolerance: {TOLERANCE_RULE} (z = {s.get('z')}, floor = "
                  f"{100 * s.get('tol_floor', 0):.1f} points).", ""]
    for name, sweep in report.sweeps.items():
        lines += [f"## {SWEEP_TITLES.get(name, name)}", "", sweep_table(sweep)]
        settings = format_settings(sweep.attack)
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


def sweep_table(sweep: Sweep) -> str:
    """A Markdown table of a sweep: one row per swept value, its accuracy (%, ± std over
    trials)."""
    head = SWEEP_COLUMNS.get(sweep.parameter, sweep.parameter)
    cells = [format_value(float(v)) if sweep.parameter == "eps" else str(int(v)) for v in sweep.values]
    accs = [f"{100 * a:.2f}" + (f"±{100 * d:.2f}" if sweep.trials > 1 else "")
            for a, d in zip(sweep.accuracy, sweep.std)]
    return md_table([head, "Accuracy (%)"], list(zip(cells, accs)), align=["right", "right"])


def write_audit(report: AuditReport, out_dir: str | Path) -> dict[str, Path]:
    """``audit.json``, ``audit.md`` and the figures (``fig3.png``: accuracy vs eps and vs
    PGD steps; ``eot.png``: accuracy vs EOT samples) in ``out_dir``."""
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
    paths["json"] = write_json(with_code(report.to_json()), out / AUDIT, what="audit file")
    paths["markdown"] = write_text(audit_markdown(report, figures), out / "audit.md", what="audit report")
    return paths


def load_audit(path: str | Path) -> AuditReport:
    """Reads an ``audit.json`` written by ``write_audit``."""
    path = Path(path)
    try:
        return AuditReport.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise AuditError(f"cannot read audit file {str(path)!r}: {error}") from error
