"""The results report of ``pni reproduce --report``: tables from a smoke results folder,
"not run yet" rows, and the verdict logic on hand-made numbers."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pni.reproduce import get_plans, reproduce
from pni.reproduce.cli import add_reproduce_parser
from pni.reproduce.report import NOT_RUN, write_results
from pni.reproduce.verdicts import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_JUDGED, Measure, erased,
                                    judge)


@pytest.fixture(scope="module")
def smoke_table2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-smoke")
    for row in ("vanilla", "pni-w"):
        reproduce("table2", "smoke", str(out), only=row)
    return out


def test_report_renders_tables_not_run_rows_and_verdicts(smoke_table2: Path, tmp_path: Path) -> None:
    path = write_results(get_plans("table2"), "smoke", smoke_table2, tmp_path / "RESULTS.md")
    text = path.read_text()
    assert "# Reproduction results (smoke scale)" in text and "Track mnist-sample" in text
    assert "128 training images" in text          # the budget from the run's config.json
    lines = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in text.splitlines()
             if line.startswith("| ") and " | " in line}
    vanilla = lines["| Vanilla adv. train | without noise"]
    assert "83.84" in vanilla and "39.14±0.05" in vanilla and NOT_RUN not in vanilla
    pni_on = lines["| PNI-W | with noise"]
    assert "45.94±0.11" in pni_on and NOT_RUN not in pni_on
    cells = [c.strip() for c in pni_on.strip("|").split("|")]
    assert all(c not in ("", "-") for c in cells[-2:])      # EOT-PGD and AA-rand filled in
    assert "±" in cells[5]                                  # PGD: 2 trials -> mean±std
    assert NOT_RUN in lines["| PNI-I | with noise"] and NOT_RUN in lines["| PNI-A-b | without noise"]
    assert "**PNI-W beats vanilla AT under PGD** (Table 2): *" in text
    verdict_line = next(line for line in text.splitlines() if line.startswith("- **PNI-W beats vanilla AT under PGD"))
    assert any(f"*{v}*" in verdict_line for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE))
    assert "vs vanilla AT PGD" in verdict_line              # cites its numbers
    best = next(line for line in text.splitlines() if line.startswith("- **PNI-W is the best location"))
    assert NOT_JUDGED in best


def test_cli_report_writes_and_runs_nothing(smoke_table2: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="pni")
    add_reproduce_parser(parser.add_subparsers(dest="command"))
    before = sorted(p.name for p in smoke_table2.iterdir())
    target = tmp_path / "R.md"
    args = parser.parse_args(["reproduce", "table2", "--scale", "smoke", "--out", str(smoke_table2),
                              "--report", "--report-out", str(target)])
    assert args.func(args) == 0
    assert target.exists() and sorted(p.name for p in smoke_table2.iterdir()) == before
    empty = tmp_path / "empty"
    args = parser.parse_args(["reproduce", "table5", "--scale", "smoke", "--out", str(empty),
                              "--report", "--report-out", str(tmp_path / "T5.md")])
    assert args.func(args) == 0 and not empty.exists()
    t5 = (tmp_path / "T5.md").read_text()
    assert "75.13±0.17" in t5 and NOT_RUN in t5 and "resists ZOO" in t5


def test_verdict_boundaries_with_trials() -> None:
    # std 0.2 over 4 trials: SE 0.1 each, difference's SE sqrt(0.02) = 0.1414, two SE = 0.283
    a = Measure(45.0, 0.2, 4)
    assert judge("c", "T", ("a", Measure(45.29, 0.2, 4)), ("b", a)).verdict == HOLDS
    assert judge("c", "T", ("a", Measure(45.27, 0.2, 4)), ("b", a)).verdict == INCONCLUSIVE
    assert judge("c", "T", ("a", Measure(44.71, 0.2, 4)), ("b", a)).verdict == DOES_NOT_HOLD
    assert judge("c", "T", ("a", Measure(44.73, 0.2, 4)), ("b", a)).verdict == INCONCLUSIVE
    # lower is better (ZOO success rate)
    assert judge("c", "T", ("a", Measure(44.0, 0.2, 4)), ("b", a), higher_is_better=False).verdict == HOLDS
    assert judge("c", "T", ("a", None), ("b", a)).verdict == NOT_JUDGED


def test_verdict_binomial_error_with_one_trial() -> None:
    # p = 0.5 on 100 images: SE 5 points; p = 0.63: 4.83; two SE of the difference 13.9 > 13
    base = Measure(50.0, 0.0, 1, 100)
    assert judge("c", "T", ("a", Measure(63.0, 0.0, 1, 100)), ("b", base)).verdict == INCONCLUSIVE
    assert judge("c", "T", ("a", Measure(66.0, 0.0, 1, 100)), ("b", base)).verdict == HOLDS
    assert judge("c", "T", ("a", Measure(34.0, 0.0, 1, 100)), ("b", base)).verdict == DOES_NOT_HOLD
    v = judge("c", "T", ("a", Measure(66.0, 0.0, 1, 100)), ("b", base))
    assert "66.00" in v.evidence and "50.00" in v.evidence and "two standard errors 13.78" in v.evidence


def test_erased_says_so_plainly() -> None:
    gain = judge("c", "T", ("pni", Measure(46.0, 0.1, 5)), ("vanilla", Measure(39.0, 0.1, 5)))
    gone = judge("c", "T", ("pni", Measure(40.0, 0.0, 1, 1000)), ("vanilla", Measure(39.5, 0.0, 1, 1000)))
    kept = judge("c", "T", ("pni", Measure(46.0, 0.0, 1, 1000)), ("vanilla", Measure(39.0, 0.0, 1, 1000)))
    verdict = erased("EOT erases", "T", gain, gone, "EOT-PGD")
    assert verdict.verdict == HOLDS and "EOT-PGD erases PNI's gain" in verdict.line()
    assert erased("EOT erases", "T", gain, kept, "EOT-PGD").verdict == DOES_NOT_HOLD
    assert erased("EOT erases", "T", gain, judge("c", "T", ("a", None), ("b", None)), "EOT-PGD").verdict == NOT_JUDGED
