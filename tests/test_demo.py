"""pni demo end to end (slow: trains two LeNet-5 models and evaluates them)."""
from __future__ import annotations

import json

import pytest

from pni.cli.demo import run_demo


@pytest.mark.slow
def test_demo_writes_report_results_and_alpha_plot(tmp_path):
    results = run_demo(tmp_path, epochs=1, progress=False)
    assert set(results["models"]) == {"vanilla", "pni-w"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["models"]["pni-w"]["accuracy_percent"]) == {"with_noise", "without_noise"}
    assert list(saved["models"]["vanilla"]["accuracy_percent"]) == ["without_noise"]
    report = (tmp_path / "report.md").read_text()
    assert "EOT-PGD" in report and "alphas.png" in report
    assert (tmp_path / "alphas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
