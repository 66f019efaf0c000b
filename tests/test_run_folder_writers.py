"""Issue 22: one writer per run folder (a second ``pni train`` on the same ``--out`` refuses,
naming the holder's pid), a diverged end-of-epoch state never becomes ``checkpoint.pt``,
``--resume`` with fewer epochs than the run holds refuses, and a failed ``--overwrite`` says
where the replaced run is kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pni.training.trainer
from pni.cli import app as cli
from pni.checkpoint import read_checkpoint
from pni.folder_lock import held_elsewhere
from pni.training import TrainingError

SLOW_TRAIN = ("import sys, time\nimport pni.training.trainer as t\nreal = t.Trainer.epoch_steps\n"
              "def slow(self, epoch):\n    print('holding the folder', flush=True)\n    time.sleep(120)\n"
              "    return (yield from real(self, epoch))\n"
              "t.Trainer.epoch_steps = slow\nfrom pni import cli\nsys.exit(cli.main(sys.argv[1:]))\n")


def _args(out: Path, *extra: str) -> list[str]:
    """A small smoke run: 128 images, 2 batches an epoch."""
    return ["train", "--preset", "mnist-lenet", "--scale", "smoke", "--train-subset", "128",
            "--eval-subset", "0", "--epochs", "2", "--steps", "1", "--batch-size", "64",
            "--progress", "false", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two-epochs") / "run"
    assert cli.main(_args(out)) == 0
    return out


def _wait_for(proc: subprocess.Popen, text: str) -> bool:
    """Reads ``proc``'s output until a line equal to ``text`` (False at its end)."""
    assert proc.stdout is not None
    return any(line.strip() == text for line in proc.stdout)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".running"}


def test_a_second_pni_train_on_one_folder_refuses_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, *_args(out, "--lr", "0.5")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(first, "holding the folder")
        assert held_elsewhere(out)
        before = _files(out)
        assert cli.main(_args(out, "--lr", "0.02")) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"pni train: error: output folder {str(out)!r} is being written by another process "
                       f"(pid {first.pid}); one writer per run folder: wait for it to end or choose another --out")
        assert _files(out) == before and json.loads((out / "config.json").read_text())["lr"] == 0.5
    finally:
        first.kill()
        first.wait()
    # the holder is gone (killed): its lock went with it, and the folder can be trained again
    assert not held_elsewhere(out)
    assert cli.main(_args(out, "--epochs", "1", "--overwrite")) == 0


def test_the_lock_is_released_when_training_ends(two_epochs):
    assert (two_epochs / ".running").exists() and not held_elsewhere(two_epochs)
    lock = pni.folder_lock.FolderLock(two_epochs)
    assert lock.acquire()
    lock.release()


def test_resume_with_fewer_epochs_than_the_run_holds_refuses(two_epochs, capsys):
    before = _files(two_epochs)
    assert cli.main(_args(two_epochs, "--resume", "--epochs", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"pni train: error: cannot resume {str(two_epochs / 'checkpoint.pt')!r} with epochs=1 "
                   f"(--epochs): it holds 2 epochs; pass --epochs 3 or more (nothing was changed)")
    assert _files(two_epochs) == before and json.loads((two_epochs / "config.json").read_text())["epochs"] == 2


def test_a_failed_overwrite_names_the_folder_that_keeps_the_old_run(two_epochs, tmp_path, monkeypatch, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(two_epochs, out)
    before = _files(out)

    def failing(self, epoch):  # noqa: ANN001, ANN202
        raise TrainingError("non-finite or exploding loss (nan, limit 1e+04)")
        yield  # a step generator, as Trainer.epoch_steps

    monkeypatch.setattr(pni.training.trainer.Trainer, "epoch_steps", failing)
    assert cli.main(_args(out, "--overwrite")) == 2
    err = capsys.readouterr().err.strip()
    asides = list(out.glob(".overwritten.*"))
    assert len(asides) == 1
    assert err == (f"pni train: error: non-finite or exploding loss (nan, limit 1e+04); the replaced run "
                   f"is kept in {asides[0]}")
    kept = _files(asides[0])
    assert all(kept[name] == before[name] for name in ("checkpoint.pt", "train_log.jsonl", "config.json"))


def test_a_state_that_diverged_in_the_last_epoch_is_not_saved(tmp_path, monkeypatch, capsys):
    """The parameters stay below the guard's WEIGHT_LIMIT but give a loss of about 1e7: the
    end-of-epoch probe refuses to save that state; checkpoint.pt stays the one of epoch 1."""
    real = pni.training.trainer.Trainer.epoch_steps

    def diverging(self, epoch):  # noqa: ANN001, ANN202
        record = yield from real(self, epoch)
        if epoch == 1:
            with torch.no_grad():
                for name, param in self.net.named_parameters():
                    if name.startswith("fc2") and "alpha" not in name:
                        param.mul_(1e6)
        return record

    monkeypatch.setattr(pni.training.trainer.Trainer, "epoch_steps", diverging)
    out = tmp_path / "run"
    assert cli.main(_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pni train: error: diverged in epoch 2: the state after it gives a clean loss of ")
    assert err.endswith("on a probe batch (limit 10000); it was not saved, the last good checkpoint is kept")
    checkpoint = read_checkpoint(out / "checkpoint.pt")
    assert checkpoint["epoch"] == 1 and not (out / "checkpoint.prev.pt").exists()
    assert [json.loads(line)["epoch"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1]
    assert all(bool(torch.isfinite(t).all()) and float(t.abs().max()) < 1e3 for t in checkpoint["model"].values()
               if t.is_floating_point())
