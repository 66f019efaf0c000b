"""``pni reproduce``: one declarative plan per table and figure of the paper (He, Rakin,
Fan, CVPR 2019, Tables 1-7, Figures 2-3), resolved at a scale (smoke, cpu, paper) into
training runs, evaluations, transfers and audits that are run once, reused and resumed."""
from __future__ import annotations

from .plans import NAMES, PLANS, Plan, Row, get_plans, resolve
from .runner import Runner, state
from .steps import Alphas, Audit, Certify, Eval, ReproduceError, Step, Train, Transfer, run_key


def reproduce(name: str, scale: str = "smoke", out: str = "results/smoke", only: str | None = None,
              device: str = "cpu") -> dict[str, str]:
    """Runs plan ``name`` (or "all") at ``scale`` into ``out``; returns ``{step key: "ran" | "reused"}``."""
    return Runner(out, device).run(resolve(get_plans(name), scale, only))


__all__ = ["NAMES", "PLANS", "Alphas", "Audit", "Certify", "Eval", "Plan", "ReproduceError", "Row", "Runner", "Step",
           "Train", "Transfer", "get_plans", "reproduce", "resolve", "run_key", "state"]
