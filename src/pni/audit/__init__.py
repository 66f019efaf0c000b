"""The gradient-obfuscation audit (the paper's Table 7, after Athalye et al. 2018) and the
accuracy sweeps of Fig. 3 (accuracy vs eps, vs PGD steps) plus the EOT curve.

Every checklist item is *measured*, with a numeric rule stated next to its verdict
(``pni.audit.checks`` lists the rules). "Within noise" uses the binomial standard error
over ``n x trials`` attacked images: two accuracies ``p1``, ``p2`` differ when
``|p1 - p2| > tol = max(floor, z * sqrt(p1(1-p1)/N + p2(1-p2)/N))``. Accuracies come from
the outcome function of ``pni eval`` (``pni.evaluate.sample_outcomes``), seeded the same
way, so the audit's PGD numbers are ``pni eval``'s.

The package, bottom to top:

- ``settings``: ``AuditSettings`` (every knob and its default rule), ``make_settings``;
- ``result``: ``AuditItem``, ``Sweep``, ``AuditReport`` (data and JSON only);
- ``bench``: the measuring bench on ``pni.evaluate``, the noise tolerance;
- ``sweeps``: ``sweep_eps`` / ``sweep_steps`` / ``sweep_eot``;
- ``blackbox``: item 2 (surrogate training, transfer from it, ZOO);
- ``checks``: the numbered checks, one ``CHECKS`` table;
- ``run``: ``audit`` and ``audit_checkpoint``.

The audit's Markdown, ``audit.json`` and figures live in ``pni.reports.audit``
(``write_audit``, ``audit_markdown``, ``sweep_table``, ``load_audit``); they stay importable from
here for compatibility, loaded on first use so that importing ``pni.audit`` does not import
``pni.reports`` (which imports ``pni.audit.result``).
"""
from ..attacks import fgsm, is_randomized, pgd, random_search
from .bench import Attack, Bench, tolerance
from .blackbox import train_surrogate
from .checks import CHECKS, AuditRun, Check
from .result import TOLERANCE_RULE, AuditItem, AuditReport, Sweep
from .run import audit, audit_checkpoint
from .settings import (
    ALL_ITEMS,
    EPS_FRACTIONS,
    ITEM_NAMES,
    PAPER_ITEMS,
    AuditError,
    AuditSettings,
    make_settings,
)
from .sweeps import sweep_eot, sweep_eps, sweep_steps

__all__ = [
    "ALL_ITEMS", "CHECKS", "EPS_FRACTIONS", "ITEM_NAMES", "PAPER_ITEMS", "TOLERANCE_RULE",
    "Attack", "AuditError", "AuditItem", "AuditReport", "AuditRun", "AuditSettings", "Bench", "Check",
    "Sweep", "audit", "audit_checkpoint", "audit_markdown", "fgsm", "is_randomized", "load_audit",
    "make_settings", "pgd", "random_search", "sweep_eot", "sweep_eps", "sweep_steps", "sweep_table",
    "tolerance", "train_surrogate", "write_audit",
]

_REPORTS = ("audit_markdown", "load_audit", "sweep_table", "write_audit")


def __getattr__(name: str) -> object:
    """``write_audit``, ``audit_markdown``, ``sweep_table``, ``load_audit`` from ``pni.reports.audit``."""
    if name in _REPORTS:
        from ..reports import audit as reports

        return getattr(reports, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
