"""``pni reproduce --dry-run --scale paper``: GPU-minutes of training left per run and for
Tables 1-2 at the last rate logged on CUDA."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pni import cli
from pni.reproduce import get_plans, resolve
from pni.reproduce.estimate import cuda_epoch_seconds, gpu_minutes_left

DATA = "../shared/data/cifar10-jpeg.zip"


def _fake_run(folder: Path, config, seconds: list[float], device: str = "cuda") -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(replace(config, device=device).to_dict()))
    (folder / "train_log.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "train_seconds": s}) + "\n" for i, s in enumerate(seconds)))


def test_rates_come_from_the_last_cuda_epochs_of_a_run_or_one_like_it(tmp_path):
    steps = [s for s in resolve(get_plans("table2"), "paper", data_dir=DATA) if s.kind == "train"]
    control, pni_w = steps[0], steps[1]
    _fake_run(tmp_path / control.key, control.config, [30.0, 30.0, 10.0, 11.0, 9.0, 10.0, 12.0])
    _fake_run(tmp_path / "elsewhere", pni_w.config, [1.0], device="cpu")  # not a CUDA rate
    assert cuda_epoch_seconds(tmp_path / control.key) == 10.0  # the median of the last 5
    assert cuda_epoch_seconds(tmp_path / "elsewhere") is None
    shared = tmp_path / "shared"
    _fake_run(shared, control.config, [])
    (shared / "train_log.jsonl").write_text(json.dumps({"epoch": 1, "train_seconds": 30.0, "concurrent": 3}) + "\n")
    assert cuda_epoch_seconds(shared) == 10.0  # 30 wall seconds shared by 3 runs
    rows = {step.key: (left, seconds, source) for step, left, seconds, source in gpu_minutes_left(steps, tmp_path)}
    assert rows[control.key] == (160, 10.0, "own log")  # no checkpoint: every epoch is left
    assert rows[pni_w.key] == (160, 10.0, "like")


def test_dry_run_at_paper_scale_prints_gpu_minutes(tmp_path, capsys, monkeypatch):
    from pni.reproduce import estimate

    monkeypatch.setattr(estimate.RateMeter, "_measure", lambda self, config, shape: 100.0)  # no benchmark
    steps = [s for s in resolve(get_plans("table2"), "paper", data_dir=DATA) if s.kind == "train"]
    _fake_run(tmp_path / steps[0].key, steps[0].config, [9.0, 9.0])
    assert cli.main(["reproduce", "table2", "--scale", "paper", "--dry-run", "--data-dir", DATA,
                     "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert f"  {steps[0].key}: 160 epochs x 9.0 s = 24.0 min" in text
    assert f"  {steps[1].key}: 160 epochs x 9.0 s = 24.0 min (rate of a run like it)" in text
    # 8 adversarially trained ResNet-20s x 24 min; Table 1's vanilla (plain) run has no rate
    assert "Tables 1-2 (9 runs, 9 unfinished): 192.0 GPU-minutes of training left, plus 1 run(s) with no rate yet" \
        in text
