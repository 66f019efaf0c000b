"""The gradient-obfuscation audit (the paper's Table 7, after Athalye et al. 2018) and the
accuracy sweeps of Fig. 3 (accuracy vs eps, vs PGD steps) plus the EOT curve.

Every checklist item is *measured*, with a numeric rule stated next to its verdict
(``pni.auditing.checks`` lists the rules). "Within noise" uses the binomial standard error
over ``n x trials`` attacked images: two accuracies ``p1``, ``p2`` differ when
``|p1 - p2| > tol = max(floor, z * sqrt(p1(1-p1)/N + p2(1-p2)/N))``. Accuracies come from
the outcome function of ``pni eval`` (``pni.evaluation.evaluator.sample_outcomes``), seeded the same
way, so the audit's PGD numbers are ``pni eval``'s.

The package, bottom to top:

- ``settings``: ``AuditSettings`` (every knob and its default rule), ``make_settings``;
- ``result``: ``AuditItem``, ``Sweep``, ``AuditReport`` (data and JSON only);
- ``bench``: the measuring bench on ``pni.evaluation``, the noise tolerance;
- ``sweeps``: ``sweep_eps`` / ``sweep_steps`` / ``sweep_eot``;
- ``blackbox``: item 2 (surrogate training, transfer from it, ZOO);
- ``checks``: the numbered checks, one ``CHECKS`` table;
- ``run``: ``audit`` and ``audit_checkpoint``.

The audit's Markdown, ``audit.json`` and figures live in ``pni.reports.audit``
(``write_audit``, ``audit_markdown``, ``sweep_table``, ``load_audit``).
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
    "Sweep", "audit", "audit_checkpoint", "fgsm", "is_randomized",
    "make_settings", "pgd", "random_search", "sweep_eot", "sweep_eps", "sweep_steps",
    "tolerance", "train_surrogate",
]
