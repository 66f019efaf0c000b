"""``pni reproduce``: one declarative plan per table and figure of the paper (He, Rakin,
Fan, CVPR 2019, Tables 1-7, Figures 2-3), resolved at a scale (smoke, cpu, paper) into
training runs, evaluations, transfers and audits that are run once, reused and resumed."""
from __future__ import annotations

from .plans import NAMES, PLANS, Plan, Row, get_plans, resolve
from .results import Results
from .runner import Runner, state
from .steps import Alphas, Audit, Certify, Eval, ReproduceError, Step, Train, Transfer, run_key


def reproduce(name: str, scale: str = "smoke", out: str = "results/smoke", only: str | None = None,
              device: str = "cpu", data_dir: str | None = None,
              max_minutes: float | None = None, concurrent: int = 1) -> dict[str, str]:
    """Runs plan ``name`` (or "all") at ``scale`` into ``out``; returns ``{step key: "ran" | "reused"}``
    (steps left out when ``max_minutes`` ran out). ``data_dir``: CIFAR-10 as an image folder or
    zip for the CIFAR tracks (``scales.tracks``); ``concurrent``: training runs trained together
    (``Runner``)."""
    runner = Runner(out, device, max_minutes=max_minutes, concurrent=concurrent)
    return runner.run(resolve(get_plans(name), scale, only, data_dir=data_dir))


__all__ = ["NAMES", "PLANS", "Alphas", "Audit", "Certify", "Eval", "Plan", "ReproduceError", "Results", "Row", "Runner", "Step",
           "Train", "Transfer", "get_plans", "reproduce", "resolve", "run_key", "state"]
