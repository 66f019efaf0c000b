"""The paper's figures as PNG files, and Table 1 as Markdown (``pni.reports.figures``).

Fig. 2: alpha of each layer over epochs (from a training log). Fig. 3: accuracy vs eps
(top) and vs PGD steps (bottom), several models on one plot. The EOT curve: accuracy vs
EOT samples. Table 1: alpha per layer, one column per model.

Every plotting function saves a PNG and returns the data it plotted, as
``{curve label: {"x": [...], "y": [...]}}`` (accuracies in percent), so callers and tests
can check the series without reading pixels.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .markdown import md_table

Series = dict[str, dict[str, list[float]]]

LOCATION_STYLES = ("o", "s", "^", "D", "v", "P", "X", "*")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def _curve(sweep: Any) -> tuple[list[float], list[float], list[float]]:
    """(values, accuracy %, std %) of a :class:`pni.auditing.Sweep` or its JSON dict."""
    get = (lambda key: sweep[key]) if isinstance(sweep, Mapping) else (lambda key: getattr(sweep, key))
    values = [float(v) for v in get("values")]
    accuracy = [100 * float(a) for a in get("accuracy")]
    try:
        std = [100 * float(s) for s in get("std")]
    except (KeyError, AttributeError):
        std = [0.0] * len(values)
    return values, accuracy, std


def layer_key_label(key: str, labels: Mapping[str, str] | None = None, with_site: bool = False) -> str:
    """``"conv0:W"`` -> ``"Conv0"`` (``"Conv0 (W)"`` with ``with_site``) using ``labels``."""
    name, _, site = key.partition(":")
    text = (labels or {}).get(name, name)
    return f"{text} ({site})" if with_site and site else text


def _needs_site(keys: Sequence[str]) -> bool:
    names = [k.partition(":")[0] for k in keys]
    return len(set(names)) < len(names)


def plot_alpha_history(history: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                       labels: Mapping[str, str] | None = None, layers: Sequence[str] | None = None,
                       title: str = "PNI noise scale per layer") -> Series:
    """Fig. 2: alpha of each layer over epochs, from a training log's ``alphas`` records
    (``pni train`` writes one per epoch to ``train_log.jsonl``)."""
    plt = _pyplot()
    records = [r for r in history if r.get("alphas")]
    if layers is None:
        layers = []
        for record in records:
            layers += [k for k in record["alphas"] if k not in layers]
    site = _needs_site(list(layers))
    series: Series = {}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    epochs = [float(r["epoch"]) for r in records]
    for index, key in enumerate(layers):
        values = [float(r["alphas"].get(key, math.nan)) for r in records]
        label = layer_key_label(key, labels, site)
        series[label] = {"x": epochs, "y": values}
        ax.plot(epochs, values, marker=LOCATION_STYLES[index % len(LOCATION_STYLES)], markersize=3,
                label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("alpha (noise scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1)
    else:
        ax.text(0.5, 0.5, "no alphas in the log (model without noise)", ha="center",
                transform=ax.transAxes)
    _save(fig, path)
    return series


def plot_alphas(history: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                labels: Mapping[str, str] | None = None, title: str = "PNI noise scale per layer",
                layers: Sequence[str] | None = None) -> Path:
    """``plot_alpha_history`` returning the PNG's path instead of the plotted series."""
    plot_alpha_history(history, path, labels, layers, title)
    return Path(path)


def _plot_curves(ax: Any, curves: Mapping[str, Any], xlabel: str, title: str,
                 log_x: bool = False) -> Series:
    series: Series = {}
    for index, (label, sweep) in enumerate(curves.items()):
        x, y, std = _curve(sweep)
        series[label] = {"x": x, "y": y}
        marker = LOCATION_STYLES[index % len(LOCATION_STYLES)]
        (line,) = ax.plot(x, y, marker=marker, markersize=4, label=label)
        if len(x) == 1:  # e.g. a deterministic model on the EOT curve: the same at every k
            ax.axhline(y[0], color=line.get_color(), linestyle="--", linewidth=1, alpha=0.7)
        if any(s > 0 for s in std):
            ax.fill_between(x, [a - s for a, s in zip(y, std)], [a + s for a, s in zip(y, std)], alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy under attack (%)")
    ax.set_ylim(-2, 102)
    if log_x:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ticks = sorted({v for curve in series.values() for v in curve["x"] if v > 0})
        if ticks:
            ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    return series


def plot_accuracy_curves(curves: Mapping[str, Any], path: str | os.PathLike, xlabel: str,
                         title: str = "", log_x: bool = False) -> Series:
    """Accuracy (%) vs one attack parameter, one line per model (``{label: Sweep}``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    series = _plot_curves(ax, curves, xlabel, title, log_x)
    _save(fig, path)
    return series


def plot_fig3(eps_curves: Mapping[str, Any], steps_curves: Mapping[str, Any], path: str | os.PathLike,
              title: str = "Accuracy under PGD") -> dict[str, Series]:
    """Fig. 3: accuracy vs the bound eps (top) and vs the number of PGD steps (bottom),
    several models on each plot. Returns ``{"eps": series, "steps": series}``."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7.5))
    eps = _plot_curves(top, eps_curves, "L-inf bound eps (pixels in [0, 1])", f"{title}: vs eps")
    steps = _plot_curves(bottom, steps_curves, "PGD steps", f"{title}: vs PGD steps")
    _save(fig, path)
    return {"eps": eps, "steps": steps}


def plot_eot_curve(curves: Mapping[str, Any], path: str | os.PathLike,
                   title: str = "Accuracy under EOT-PGD") -> Series:
    """The EOT curve: accuracy vs the noise draws averaged per gradient (k = 1: plain PGD).
    A curve that keeps falling means single-draw PGD overstated the robustness."""
    return plot_accuracy_curves(curves, path, "EOT samples per gradient (k)", title, log_x=True)


def alpha_table(columns: Mapping[str, Mapping[str, float]], labels: Mapping[str, str] | None = None,
                footer: Mapping[str, Mapping[str, str]] | None = None, digits: int = 3) -> str:
    """Table 1 as Markdown: one row per noise site (``"<layer>:<site>"`` keys, shown with
    the paper's layer labels), one column of alphas per model; ``footer`` adds rows such
    as ``{"Clean": {model: "84.89±0.11"}}`` below."""
    keys: list[str] = []
    for alphas in columns.values():
        keys += [k for k in alphas if k not in keys]
    site = _needs_site(keys)
    rows = [[layer_key_label(key, labels, site)]
            + ["-" if alphas.get(key) is None else f"{float(alphas[key]):.{digits}f}" for alphas in columns.values()]
            for key in keys]
    rows += [[f"**{row}**"] + [cells_by_model.get(c, "-") for c in columns]
             for row, cells_by_model in (footer or {}).items()]
    return md_table(["Layer", *columns], rows)


def alpha_table_from_checkpoints(checkpoints: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
                                 digits: int = 3) -> str:
    """Table 1 from ``pni train`` checkpoints: their alphas per layer, Table 1's labels."""
    from ..models import load_model
    from ..models import layer_labels
    from ..noise import alpha_values

    if not isinstance(checkpoints, Mapping):
        checkpoints = {Path(p).parent.name or str(p): p for p in checkpoints}
    columns: dict[str, dict[str, float]] = {}
    labels: dict[str, str] = {}
    for name, path in checkpoints.items():
        model, _ = load_model(path)
        columns[name] = alpha_values(model)
        labels.update(layer_labels(model))
    return alpha_table(columns, labels, digits=digits)
