"""The demo's report (issue 24, item 7): vanilla AT and PNI-W side by side under the same
tests with the paired difference and two standard errors; EOT-PGD with PGD's steps and step
size; the demo's default folder is ignored by git. (The demo itself: tests/test_demo.py, slow.)"""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch

from pni.cli import demo
from pni.evaluation.evaluator import Evaluation

REPO = Path(__file__).resolve().parents[1]


def _evaluation(fractions: dict[str, torch.Tensor]) -> Evaluation:
    n = next(iter(fractions.values())).shape[1]
    return Evaluation(attacks={}, trials=2, seeds=[0, 1], n=n, fractions={"without_noise": fractions})


def test_eot_pgd_uses_pgds_steps_and_step_size() -> None:
    _, params = demo.demo_attacks()
    assert params["eot-pgd"]["steps"] == params["pgd"]["steps"]
    assert params["eot-pgd"]["step_size"] == params["pgd"]["step_size"]
    assert params["eot-pgd"]["eot"] > 1


def test_paired_difference_and_its_standard_error() -> None:
    a = _evaluation({"pgd": torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])})
    b = _evaluation({"pgd": torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])})
    diff, se = demo.paired_difference(a, b, "without_noise", "pgd")
    per_image = torch.tensor([0.0, 1.0, -0.5, 0.0])
    assert diff == pytest.approx(100 * float(per_image.mean()))
    assert se == pytest.approx(100 * float(per_image.std()) / 2)
    # a noise-free model (one setting) is compared with the other's "with noise" too
    b.fractions["with_noise"] = b.fractions["without_noise"]
    assert demo.paired_difference(a, b, "with_noise", "pgd") == (diff, se)
    table = demo.paired_table(a, b, ["pgd"])
    assert "PNI-W - vanilla AT, paired over the same 4 images" in table
    assert f"| +{diff:.2f} | {2 * se:.2f} | no |" in table
    assert math.isfinite(se)


def test_the_demo_folder_is_ignored_by_git() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "check-ignore", "-q", "pni-demo/report.md"], cwd=REPO)
    assert out.returncode == 0
