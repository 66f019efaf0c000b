"""Compatibility: the old ``pni.figures`` module; the figures live in ``pni.reports.figures``."""
from .reports.figures import (
    LOCATION_STYLES,
    Series,
    alpha_table,
    alpha_table_from_checkpoints,
    layer_key_label,
    plot_accuracy_curves,
    plot_alpha_history,
    plot_eot_curve,
    plot_fig3,
)

__all__ = [
    "LOCATION_STYLES", "Series", "alpha_table", "alpha_table_from_checkpoints", "layer_key_label",
    "plot_accuracy_curves", "plot_alpha_history", "plot_eot_curve", "plot_fig3",
]
