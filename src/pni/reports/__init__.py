"""Every report pni writes: Markdown tables, JSON result files, figures. Nothing below
this package renders a report (result files are written by ``pni.files.write_json``); it is the top of the data flow
(data -> model -> attack -> train/evaluate/audit/certify -> report).

- ``markdown``: ``md_table`` (every table), the shared cell formats;
- ``figures``: the paper's figures as PNGs (Fig. 2, Fig. 3, the EOT curve) and Table 1;
- ``evaluation``: Table 2 (``pni eval``: ``results.json`` / ``results.md``) and Table 5 (``pni transfer``);
- ``audit``: ``audit.md`` / ``audit.json`` / figures of ``pni audit``, and reading ``audit.json``;
- ``certify``: ``certify.md`` / ``certify.json`` / ``certify.png`` and the certificate cross-check;
- ``runs``: several run folders in one ``report.md`` (``pni report``).
"""
from .audit import audit_markdown, load_audit, sweep_table, write_audit
from .certify import certificate_check_markdown, certification_markdown, plot_certification, write_certification
from .evaluation import (
    attack_metrics_table,
    attack_parameters_table,
    evaluation_markdown,
    evaluation_table,
    transfer_markdown,
    transfer_table,
    write_evaluation,
    write_transfer,
)
from .figures import (
    alpha_table,
    alpha_table_from_checkpoints,
    plot_accuracy_curves,
    plot_alpha_history,
    plot_alphas,
    plot_eot_curve,
    plot_fig3,
)
from .markdown import format_cell, format_value, md_table
from .runs import ReportError, RunRecord, audit_matrix, load_run, write_runs_report

__all__ = [
    "ReportError", "RunRecord", "alpha_table", "alpha_table_from_checkpoints",
    "attack_metrics_table", "attack_parameters_table", "audit_markdown", "audit_matrix",
    "certificate_check_markdown", "certification_markdown", "evaluation_markdown", "evaluation_table",
    "format_cell", "format_value", "load_audit", "load_run", "md_table", "plot_accuracy_curves",
    "plot_alpha_history", "plot_alphas", "plot_certification", "plot_eot_curve", "plot_fig3",
    "sweep_table", "transfer_markdown", "transfer_table", "write_audit", "write_certification",
    "write_evaluation", "write_runs_report", "write_transfer",
]
