"""Issue 9, item 10: every user mistake ends in one line ``pni <cmd>: error: ...`` and a
non-zero status, never a traceback; ``--debug`` shows the traceback."""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import pytest
import torch

import pni
from pni.cli import app as cli
from pni.checkpoint import FORMAT, VERSION
from pni.models import model_meta

SMOKE = ["--preset", "mnist-lenet", "--scale", "smoke", "--train-subset", "64", "--eval-subset", "0",
         "--steps", "1", "--progress", "false"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stderr of ``pni argv`` (argparse's own exits included)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def error_line(code: int, err: str, command: str) -> str:
    """The error line; fails unless the status is non-zero, there is no traceback and the
    error is the last line, ``pni <command>: error: ...``."""
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"pni {command}: error: "), err
    return line


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli.main(["train", *SMOKE, "--out", str(out)]) == 0
    return out


def _checkpoint(folder: Path, name: str, model: torch.nn.Module) -> Path:
    path = folder / name
    torch.save({"format": FORMAT, "version": VERSION, "model": model.state_dict(),
                "model_meta": model_meta(model),
                "config": {"dataset": "mnist-sample", "eps": 0.1, "step_size": 0.05}}, path)
    return path


# --- devices ------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["gpu", "cuda:x", ""])
def test_train_with_a_bad_device_string(capsys, tmp_path, device):
    line = error_line(*run(capsys, "train", *SMOKE, "--out", tmp_path / "r", "--device", device), "train")
    assert f"device={device!r}" in line and "cuda:N" in line
    assert not (tmp_path / "r").exists()


@NO_CUDA
def test_train_on_cuda_without_cuda(capsys, tmp_path):
    line = error_line(*run(capsys, "train", *SMOKE, "--out", tmp_path, "--device", "cuda"), "train")
    assert "CUDA" in line and "use cpu" in line


@NO_CUDA
@pytest.mark.parametrize("command", ["eval", "transfer", "audit"])
def test_evaluation_commands_check_the_device(capsys, run_dir, command):
    checkpoint = run_dir / "checkpoint.pt"
    extra = [checkpoint] if command == "transfer" else []
    line = error_line(*run(capsys, command, checkpoint, *extra, "--device", "cuda"), command)
    assert "--device" in line and "CUDA" in line
    line = error_line(*run(capsys, command, checkpoint, *extra, "--device", "blah"), command)
    assert "device='blah'" in line


# --- flags and values ---------------------------------------------------------------------

def test_negative_momentum(capsys, tmp_path):
    line = error_line(*run(capsys, "train", *SMOKE, "--out", tmp_path, "--momentum", "-0.5"), "train")
    assert "momentum=-0.5" in line and "[0, 1)" in line


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_eval_batch_size_must_be_positive(capsys, run_dir, value):
    line = error_line(*run(capsys, "eval", run_dir / "checkpoint.pt", "--batch-size", value), "eval")
    assert "--batch-size" in line and repr(value) in line


def test_an_unknown_flag(capsys, run_dir):
    line = error_line(*run(capsys, "eval", run_dir / "checkpoint.pt", "--bogus"), "eval")
    assert "--bogus" in line


def test_malformed_toml_names_the_file(capsys, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text('[base]\nmodel = "lenet5\n')
    line = error_line(*run(capsys, "train", "--preset", preset, "--out", tmp_path / "r"), "train")
    assert str(preset) in line and "malformed TOML" in line


# --- output folders -----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "eval", "report", "demo"])
def test_out_that_is_a_file(capsys, run_dir, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = {"train": ["train", *SMOKE], "eval": ["eval", run_dir / "checkpoint.pt"],
            "report": ["report", run_dir], "demo": ["demo"]}[command]
    line = error_line(*run(capsys, *argv, "--out", blocker), command)
    assert str(blocker) in line and "is a file" in line
    line = error_line(*run(capsys, *argv, "--out", blocker / "inside"), command)
    assert str(blocker) in line


def _sys_refuses_files() -> bool:
    """True where /sys exists and refuses a new file (Linux, even to root)."""
    try:
        with open("/sys/pni-probe", "w"):
            return False
    except OSError:
        return os.path.isdir("/sys")


@pytest.mark.skipif(not _sys_refuses_files(), reason="needs a folder that refuses new files (/sys)")
def test_out_that_cannot_be_written(capsys, run_dir):
    line = error_line(*run(capsys, "train", *SMOKE, "--out", "/sys/pni-test-run"), "train")
    assert "/sys/pni-test-run" in line and "cannot be written" in line
    line = error_line(*run(capsys, "eval", run_dir / "checkpoint.pt", "--out", "/sys/pni-test-eval"), "eval")
    assert "cannot be written" in line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_disk_full_while_saving_the_checkpoint(capsys, tmp_path, monkeypatch):
    real = os.fsync

    def fsync(fd: int) -> None:
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    line = error_line(*run(capsys, "train", *SMOKE, "--out", tmp_path), "train")
    assert "cannot write checkpoint" in line and "No space left on device" in line
    assert not (tmp_path / "checkpoint.pt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --- resuming -----------------------------------------------------------------------------

def test_a_corrupt_log_line_on_resume(capsys, run_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("checkpoint.pt", "config.json"):
        (folder / name).write_bytes((run_dir / name).read_bytes())
    (folder / "train_log.jsonl").write_text('{"epoch": 1,\n')
    line = error_line(*run(capsys, "train", *SMOKE, "--out", folder, "--resume", "--epochs", "2"), "train")
    assert "train_log.jsonl' line 1 is not valid JSON" in line


def test_resume_with_nothing_to_resume_or_only_a_log(capsys, tmp_path):
    line = error_line(*run(capsys, "train", *SMOKE, "--out", tmp_path, "--resume"), "train")
    assert "nothing to resume" in line
    (tmp_path / "train_log.jsonl").write_text('{"epoch": 1}\n')
    line = error_line(*run(capsys, "train", *SMOKE, "--out", tmp_path, "--resume"), "train")
    assert "no checkpoint.pt" in line and "--overwrite" in line


def test_resume_with_another_learning_rate_lists_the_field(capsys, run_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    line = error_line(*run(capsys, "train", *SMOKE, "--out", folder, "--resume", "--lr", "0.5",
                           "--epochs", "2"), "train")
    assert "lr (0.02 -> 0.5)" in line and "epochs" not in line.split("differs in")[1].split(";")[0]


# --- checkpoints and data that do not fit ---------------------------------------------------

def test_a_checkpoint_without_its_model(capsys, run_dir, tmp_path):
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    del checkpoint["model"]
    torch.save(checkpoint, tmp_path / "c.pt")
    line = error_line(*run(capsys, "eval", tmp_path / "c.pt"), "eval")
    assert "has no 'model' entry" in line and "c.pt" in line


@pytest.mark.parametrize("case,match", [
    ("channels", "1 channel(s) but the model takes 3"),
    ("classes", "labels must be classes 0 to 4"),
    ("nan", "weights are not finite"),
])
def test_evaluation_data_or_weights_that_do_not_fit(capsys, tmp_path, case, match):
    torch.manual_seed(0)
    if case == "channels":
        model = pni.inject(pni.create_model("resnet20", width=0.25), "W")
    else:
        model = pni.inject(pni.create_model("lenet5", num_classes=5 if case == "classes" else 10), "W")
    if case == "nan":
        with torch.no_grad():
            model.fc0.parametrizations.weight.original[0, 0] = float("nan")
    path = _checkpoint(tmp_path, f"{case}.pt", model)
    for command in ("eval", "audit"):
        line = error_line(*run(capsys, command, path, "--num-images", "16", "--trials", "1"), command)
        assert match in line


def test_report_of_a_config_that_is_not_an_object(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps([1, 2]))
    line = error_line(*run(capsys, "report", tmp_path / "run", "--out", tmp_path / "rep"), "report")
    assert "config.json" in line and "not a config" in line


# --- --debug and unexpected failures --------------------------------------------------------

def test_debug_shows_the_traceback(capsys, tmp_path):
    code, err = run(capsys, "train", *SMOKE, "--out", tmp_path, "--resume", "--debug")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("pni train: error:")


def test_an_unexpected_failure_is_one_line_with_a_hint(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("something\nbroke")

    from pni.cli import info

    monkeypatch.setattr(info, "cmd_info", broken)
    code, err = run(capsys, "info")
    line = error_line(code, err, "info")
    assert code == 1 and "RuntimeError: something broke" in line and "--debug" in line
