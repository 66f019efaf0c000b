"""Reports: JSON, Markdown tables laid out like the paper's, and PNG plots."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evaluate import NOISE_TITLES, Evaluation

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


def evaluation_table(rows: Sequence[tuple[str, Evaluation]], attacks: Sequence[str] | None = None) -> str:
    """A Markdown table like the paper's Table 2: per row a model, then "Test with PNI"
    and "Test without PNI" column groups of clean / attack accuracies (mean±std %)."""
    if attacks is None:
        attacks = []
        for _, ev in rows:
            for setting in ev.accuracies.values():
                attacks += [a for a in setting if a not in attacks]
    settings = [s for s in NOISE_TITLES if any(s in ev.accuracies for _, ev in rows)]
    header = ["Model"] + [f"{NOISE_TITLES[s]}: {ATTACK_TITLES.get(a, a)}" for s in settings for a in attacks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, ev in rows:
        summary = ev.summary()
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
            text = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
            lines.append(f"- **{ATTACK_TITLES.get(name, name)}**: {text}")
    return "\n".join(lines) + ("\n" if lines else "")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_alphas(history: Sequence[dict[str, Any]], path: str | os.PathLike,
                labels: dict[str, str] | None = None, title: str = "PNI noise scale per layer",
                layers: Sequence[str] | None = None) -> Path:
    """Fig. 2: alpha of each layer over epochs, from a training log's ``alphas`` records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(layers) if layers is not None else list(history[0].get("alphas", {})) if history else []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    epochs = [record["epoch"] for record in history]
    for key in keys:
        values = [record.get("alphas", {}).get(key, float("nan")) for record in history]
        name = key.split(":")[0]
        label = (labels or {}).get(name, name)
        ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("alpha (noise scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=8, ncol=2 if len(keys) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_evaluation(evaluation: Evaluation, out_dir: str | os.PathLike, label: str) -> dict[str, Path]:
    """``results.json`` and ``results.md`` (a Table 2-style table and the attack settings)."""
    out_dir = Path(out_dir)
    json_path = write_json({"model": label, **evaluation.to_json()}, out_dir / "results.json")
    text = (f"# Evaluation: {label}\n\n"
            f"Accuracy (%) on {evaluation.n} images, mean±std over {evaluation.trials} trials "
            f"(seeds {evaluation.seeds[0]}..{evaluation.seeds[-1]}).\n\n"
            + evaluation_table([(label, evaluation)])
            + "\nAttack settings:\n\n" + attack_parameters_table(evaluation))
    md_path = out_dir / "results.md"
    md_path.write_text(text)
    return {"json": json_path, "markdown": md_path}
