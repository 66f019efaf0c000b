"""Reports: JSON, Markdown tables laid out like the paper's, and PNG plots."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audit.result import TOLERANCE_RULE, AuditReport
from .audit.settings import ITEM_NAMES
from .evaluate import NOISE_TITLES, Evaluation
from .errors import PNIError

ATTACK_TITLES = {"clean": "Clean", "fgsm": "FGSM", "pgd": "PGD", "eot-pgd": "EOT-PGD",
                 "cw": "C&W", "zoo": "ZOO", "aa-rand": "AA-rand", "aa-standard": "AA",
                 "worst-case": "Worst case"}


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Writes ``obj`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def format_cell(stats: dict[str, float] | None, trials: int) -> str:
    """``84.89±0.11`` as in the paper; a single trial gives the mean alone."""
    if stats is None:
        return "-"
    if trials > 1:
        return f"{stats['mean']:.2f}±{stats['std']:.2f}"
    return f"{stats['mean']:.2f}"


def evaluation_table(rows: Sequence[tuple[str, Evaluation]], attacks: Sequence[str] | None = None,
                     majority: bool = False) -> str:
    """A Markdown table like the paper's Table 2: per row a model, then "Test with PNI"
    and "Test without PNI" column groups of clean / attack accuracies (mean±std %).
    ``majority``: the majority-vote accuracies (evaluations with ``votes > 1``)."""
    if attacks is None:
        attacks = []
        for _, ev in rows:
            for setting in ev.accuracies.values():
                attacks += [a for a in setting if a not in attacks]
    settings = [s for s in NOISE_TITLES if any(s in ev.accuracies for _, ev in rows)]
    header = ["Model"] + [f"{NOISE_TITLES[s]}: {ATTACK_TITLES.get(a, a)}" for s in settings for a in attacks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, ev in rows:
        summary = ev.vote_summary() if majority else ev.summary()
        cells = [label]
        for s in settings:
            for a in attacks:
                cells.append(format_cell(summary.get(s, {}).get(a), ev.trials))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def attack_parameters_table(evaluation: Evaluation) -> str:
    """A Markdown list of every attack's parameters, for the report."""
    lines = []
    for name, params in evaluation.attacks.items():
        if params:
            text = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
            lines.append(f"- **{ATTACK_TITLES.get(name, name)}**: {text}")
    return "\n".join(lines) + ("\n" if lines else "")


def attack_metrics_table(evaluation: Evaluation) -> str:
    """The attacks' own figures (mean±std over trials): success rate (% of the initially
    correct images fooled, by the attack's own check), mean L2 of the successful
    perturbations (C&W: Table 4) and AutoAttack's one-pass accuracy; empty if none."""
    metrics = evaluation.attack_metrics()
    if not metrics:
        return ""
    columns = [("success_rate", "Success rate (%)"), ("mean_l2", "Mean L2 of successes"),
               ("reported_accuracy", "One-pass accuracy (%)")]
    lines = ["| Attack | Setting | " + " | ".join(title for _, title in columns) + " |",
             "|" + "---|" * (2 + len(columns))]
    for setting, per_attack in metrics.items():
        for name, values in per_attack.items():
            cells = [ATTACK_TITLES.get(name, name), NOISE_TITLES.get(setting, setting)]
            cells += [format_cell(values.get(key), evaluation.trials) if key in values else "-"
                      for key, _ in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_value(value: Any) -> str:
    """A parameter value for a report: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_alphas(history: Sequence[dict[str, Any]], path: str | os.PathLike,
                labels: dict[str, str] | None = None, title: str = "PNI noise scale per layer",
                layers: Sequence[str] | None = None) -> Path:
    """Fig. 2: alpha of each layer over epochs, from a training log's ``alphas`` records
    (``pni.figures.plot_alpha_history``, which also returns the plotted series)."""
    from .figures import plot_alpha_history

    plot_alpha_history(history, path, labels, layers, title)
    return Path(path)


def write_evaluation(evaluation: Evaluation, out_dir: str | os.PathLike, label: str) -> dict[str, Path]:
    """``results.json`` and ``results.md`` (a Table 2-style table and the attack settings)."""
    out_dir = Path(out_dir)
    json_path = write_json({"model": label, **evaluation.to_json()}, out_dir / "results.json")
    judged = (f" Every prediction is judged over {evaluation.votes} noise draws: the accuracy is "
              f"the expected accuracy (mean over draws)." if evaluation.votes > 1 else "")
    text = (f"# Evaluation: {label}\n\n"
            f"Accuracy (%) on {evaluation.n} images, mean±std over {evaluation.trials} trials "
            f"(seeds {evaluation.seeds[0]}..{evaluation.seeds[-1]}).{judged}\n\n"
            + evaluation_table([(label, evaluation)]))
    if "worst-case" in evaluation.attacks:
        text += ("\n*Worst case*: per image, correct under every attack run (over: "
                 f"{evaluation.attacks['worst-case'].get('over', '')}): the robust accuracy to quote.\n")
    if evaluation.votes > 1 and evaluation.vote_accuracies:
        text += (f"\nMajority vote over {evaluation.votes} noise draws (%):\n\n"
                 + evaluation_table([(label, evaluation)], majority=True))
    metrics = attack_metrics_table(evaluation)
    if metrics:
        text += "\nThe attacks' own figures:\n\n" + metrics
    text += "\nAttack settings:\n\n" + attack_parameters_table(evaluation)
    md_path = out_dir / "results.md"
    md_path.write_text(text)
    return {"json": json_path, "markdown": md_path}


def transfer_table(matrix: Any, majority: bool = False) -> str:
    """Table 5 (left) for a ``pni.attacks.transfer.TransferMatrix``: one row per source, one
    column per target (accuracy %, mean±std; the diagonal is the white-box attack), then
    the ``S => T`` pairs in the paper's layout."""
    summary = matrix.summary(majority=majority)
    names = matrix.names
    lines = ["| Source \\ Target | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for source in names:
        cells = [format_cell(summary[source][target], matrix.trials) for target in names]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    pairs = [(s, t) for s in names for t in names if s != t]
    lines += ["", "| " + " | ".join(f"{s} ⇒ {t}" for s, t in pairs) + " |", "|" + "---|" * len(pairs),
              "| " + " | ".join(format_cell(summary[s][t], matrix.trials) for s, t in pairs) + " |"]
    return "\n".join(lines) + "\n"


def write_transfer(matrix: Any, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``transfer.json`` and ``transfer.md`` for a transfer matrix (``pni transfer``)."""
    out_dir = Path(out_dir)
    json_path = write_json(matrix.to_json(), out_dir / "transfer.json")
    models = "\n".join(f"- **{name}**: {matrix.labels.get(name, name)}" for name in matrix.names)
    params = ", ".join(f"{k}={format_value(v)}" for k, v in matrix.params.items())
    votes = matrix.params.get("votes", 1)
    judged = f" Each prediction is judged over {votes} noise draws (expected accuracy)." if votes > 1 else ""
    text = (f"# Transfer attack (Table 5)\n\n{models}\n\n"
            f"Accuracy (%) of the target on adversarial examples made on the source, {matrix.n} images, "
            f"mean±std over {matrix.trials} trials (seeds {matrix.seeds[0]}..{matrix.seeds[-1]}).{judged}\n\n"
            + transfer_table(matrix) + f"\nAttack: {params}\n")
    md_path = out_dir / "transfer.md"
    md_path.write_text(text)
    return {"json": json_path, "markdown": md_path}


# --- several runs in one report (``pni report RUN_DIR...``) -----------------------------

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
        from .models import create_model, layer_labels

        try:
            model = create_model(self.config["model"], width=self.config.get("width", 1.0))
        except (KeyError, ValueError):
            return {}
        return layer_labels(model)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read {str(path)!r}: {error}") from error


def load_run(run_dir: str | os.PathLike, name: str | None = None) -> RunRecord:
    """Reads a run folder written by ``pni train`` (+ ``pni eval``, ``pni audit``)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"run folder {str(path)!r} does not exist")
    record = RunRecord(name=name or path.resolve().name, path=path)
    found = False
    if (path / "config.json").exists():
        record.config = _read_json(path / "config.json")
        found = True
    log = path / "train_log.jsonl"
    if log.exists():
        try:
            record.history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        except ValueError as error:
            raise ReportError(f"cannot read {str(log)!r}: {error}") from error
        found = True
    results = path / "eval" / "results.json"
    if results.exists():
        try:
            record.evaluation = Evaluation.from_json(_read_json(results))
        except ValueError as error:
            raise ReportError(f"{str(results)!r}: {error}") from error
        found = True
    audit_path = path / "audit" / "audit.json"
    if audit_path.exists():
        try:
            record.audit = AuditReport.from_json(_read_json(audit_path))
        except (KeyError, TypeError, ValueError) as error:
            raise ReportError(f"{str(audit_path)!r} is not an audit written by pni audit: {error}") from error
        found = True
    if (path / "checkpoint.pt").exists():
        record.checkpoint = path / "checkpoint.pt"
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
    header = ["#", "Check"] + [r.name for r in audited]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- Rule {n} (fails when): {rules[n]}" for n in numbers if n in rules]
    return "\n".join(lines) + "\n"


def write_runs_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      title: str = "PNI runs") -> dict[str, Path]:
    """One Markdown report for several runs, laid out like the paper: the runs, Table 1
    (alpha per layer), Fig. 2 (alpha over epochs), Table 2 (accuracy under attack, noise on
    and off), Table 7 (the audit, with its evidence and rules), Fig. 3 (accuracy vs eps and
    vs PGD steps) and the EOT curve. Figures are PNGs next to ``report.md``."""
    from .figures import alpha_table, plot_alpha_history, plot_eot_curve, plot_fig3

    if not run_dirs:
        raise ReportError("no run folders given")
    runs = [load_run(p, name) for p, name in zip(run_dirs, _unique_names(run_dirs))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    md = [f"# {title}", "", "## Runs", ""]
    columns = ["Run", "Model", "Noise", "Dataset", "Epochs", "Training eps", "Last epoch clean / PGD (%)"]
    md += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in runs:
        last = r.history[-1] if r.history else {}
        metric = (f"{100 * last['test_clean_acc']:.2f} / {100 * last.get('test_pgd_acc', float('nan')):.2f}"
                  if "test_clean_acc" in last else "-")
        md.append("| " + " | ".join([r.name, *r.description().values(), metric]) + " |")
    md.append("")

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
                row = ATTACK_TITLES.get(attack, attack)
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
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(md) + "\n")
    return paths
