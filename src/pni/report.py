"""Compatibility: the old ``pni.report`` module. Reports live in ``pni.reports``
(``evaluation``, ``runs``, ``figures``, ``json_io``, ``markdown``); import from there."""
from .reports.evaluation import (
    ATTACK_TITLES,
    attack_metrics_table,
    attack_parameters_table,
    evaluation_table,
    transfer_table,
    write_evaluation,
    write_transfer,
)
from .reports.figures import plot_alphas
from .reports.json_io import write_json
from .reports.markdown import format_cell, format_value
from .reports.runs import ReportError, RunRecord, audit_matrix, load_run, write_runs_report

__all__ = [
    "ATTACK_TITLES", "ReportError", "RunRecord", "attack_metrics_table", "attack_parameters_table",
    "audit_matrix", "evaluation_table", "format_cell", "format_value", "load_run", "plot_alphas",
    "transfer_table", "write_evaluation", "write_json", "write_runs_report", "write_transfer",
]
