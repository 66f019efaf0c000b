"""``pni train --tensorboard DIR`` (issue 24, item 8): every epoch's log record mirrored to
TensorBoard beside ``train_log.jsonl``; a clear one-line error when tensorboard is missing."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from pni.cli import main

TRAIN = ["train", "--preset", "mnist-lenet", "--scale", "smoke", "--epochs", "2", "--train-subset", "40",
         "--eval-subset", "20", "--steps", "1", "--batch-size", "20", "--progress", "false", "--threads", "1"]


def test_without_tensorboard_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails
    assert main([*TRAIN, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the tensorboard package" in err and "pip install tensorboard" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()            # refused before any training


def test_every_epoch_record_goes_to_tensorboard(tmp_path: Path, monkeypatch) -> None:
    written: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str) -> None:
            self.log_dir = log_dir
            Path(log_dir).mkdir(parents=True, exist_ok=True)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            written.append((tag, float(value), step))

        def add_histogram(self, *args) -> None:
            pass

        def flush(self) -> None:
            pass

        def close(self) -> None:
            written.append(("closed", 0.0, 0))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    assert main([*TRAIN, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    for record in log:
        step = record["epoch"]
        assert ("train/train_loss", pytest.approx(record["train_loss"]), step) in written
        assert ("test/test_clean_acc", pytest.approx(record["test_clean_acc"]), step) in written
        for name, alpha in record["alphas"].items():
            assert (f"alpha/{name}", pytest.approx(alpha), step) in written
    assert written[-1][0] == "closed"


def test_real_tensorboard_writes_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    assert main([*TRAIN, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
