"""Checkpoints: weights-only loading refuses code, bad entries give one line, writes are
atomic, follow the umask and survive a full disk without leaving temp files."""
from __future__ import annotations

import errno
import os
import random
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pni
from pni.cli import app as cli
from pni.checkpoint import CheckpointError, atomic_save, load_state, read_checkpoint
from pni.models import load_model
from pni.files import temp_files
from pni.config import TrainConfig
from pni.seeding import SeedingError, rng_state as _rng_state, set_rng_state as _set_rng_state
from pni.training.trainer import build_model, fit


class _Payload:
    """Unpickled, it writes ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real one-epoch run (tiny): its checkpoint is the template of the bad ones."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(model="lenet5", dataset="mnist-sample", epochs=1, batch_size=32, lr=0.05,
                         milestones=[], eps=0.1, step_size=0.05, steps=1, eval_subset=0,
                         progress=False).validate()
    data = pni.load_dataset("mnist-sample", "train").subset(64)
    torch.manual_seed(0)
    fit(build_model(config, data), data, config, out_dir=out)
    return out


@pytest.fixture
def good(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def _hostile(good: dict, folder: Path) -> tuple[Path, Path]:
    """A checkpoint that looks right but runs code when unpickled, and its marker file."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "marker"
    path = folder / "checkpoint.pt"
    torch.save({**good, "note": _Payload(marker)}, path)
    return path, marker


def _one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message


# --- code in a pickle ------------------------------------------------------------------

def test_the_payload_really_runs_code_when_loaded_unsafely(good, tmp_path):
    path, marker = _hostile(good, tmp_path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"  # so the refusals below are meaningful


@pytest.mark.parametrize("loader", [read_checkpoint, load_model,
                                    lambda p: read_checkpoint(p, resume=True)],
                         ids=["read_checkpoint", "load_model", "read_checkpoint-resume"])
def test_python_api_refuses_a_checkpoint_that_runs_code(good, tmp_path, loader):
    path, marker = _hostile(good, tmp_path)
    with pytest.raises(CheckpointError) as error:
        loader(path)
    message = _one_line(str(error.value))
    assert str(path) in message and "refusing to load" in message and "exec" in message
    assert not marker.exists()


@pytest.mark.parametrize("command", ["eval", "audit", "transfer", "train"])
def test_every_cli_path_refuses_a_checkpoint_that_runs_code(good, tmp_path, capsys, command):
    path, marker = _hostile(good, tmp_path / "run")
    argv = {
        "eval": ["eval", str(path), "--num-images", "8", "--trials", "1"],
        "audit": ["audit", str(path), "--num-images", "8", "--no-surrogate", "--quiet"],
        "transfer": ["transfer", str(path), str(path), "--num-images", "8", "--trials", "1"],
        "train": ["train", "--preset", "mnist-lenet", "--scale", "smoke", "--out", str(path.parent),
                  "--resume", "--train-subset", "64", "--eval-subset", "0", "--progress", "false"],
    }[command]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert _one_line(err).startswith(f"pni {command}: error: refusing to load checkpoint")
    assert str(path) in err
    assert not marker.exists()


# --- pni's own checkpoints -------------------------------------------------------------

def test_own_checkpoints_load_weights_only_with_plain_random_states(run_dir):
    checkpoint = read_checkpoint(run_dir / "checkpoint.pt", resume=True)
    rng = checkpoint["rng"]
    assert isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8
    assert isinstance(rng["python"], list) and isinstance(rng["numpy"], list)
    assert all(type(k) is int for k in rng["numpy"][1]) and len(rng["numpy"][1]) == 624
    model, _ = load_model(run_dir / "checkpoint.pt")
    assert pni.is_injected(model)


def test_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    def draw() -> tuple:
        return random.random(), np.random.rand(), torch.rand(3).tolist(), random.gauss(0, 1)

    random.gauss(0, 1)  # a cached Gaussian in Python's state, a half-drawn numpy one
    np.random.standard_normal()
    atomic_save({"rng": _rng_state()}, tmp_path / "rng.pt")
    expected = draw()
    _set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert draw() == expected


def test_a_malformed_random_state_is_a_seeding_error():
    state = _rng_state()
    state["numpy"] = state["numpy"][:2]
    with pytest.raises(SeedingError, match="random state"):
        _set_rng_state(state)


# --- bad entries ------------------------------------------------------------------------

def _drop(key):
    return lambda c: {k: v for k, v in c.items() if k != key}


def _set(key, value):
    return lambda c: {**c, key: value}


def _set_meta(key, value):
    return lambda c: {**c, "model_meta": {**c["model_meta"], key: value}}


@pytest.mark.parametrize("change,match", [
    (_drop("model"), "has no 'model' entry"),
    (_set("model", [1, 2, 3]), "entry 'model' is not a state dict"),
    (_set("model", {"conv0.weight": "weights"}), "entry 'model' is not a state dict"),
    (_set("model_meta", "lenet5"), "entry 'model_meta' is not a dict"),
    (_set_meta("width", "wide"), "entry 'width' is not a number"),
    (_set_meta("input_shape", "1x28x28"), "entry 'input_shape' is not a list of integers"),
    (_set_meta("noise", {"location": "W"}), "noise has no 'granularity', 'init_alpha' entry"),
    (_set("config", {"eps": "8/255"}), "config field eps='8/255': expected a finite number"),
    (_set("config", ["eps"]), "entry 'config' is not a dict"),
    (_set("epoch", -1), "entry 'epoch' is not an integer >= 0"),
    (lambda c: ["not", "a", "dict"], "is not a pni checkpoint"),
    (_drop("format"), "is not a pni checkpoint"),
    # issue 22: ranges checked before the model is built (not an allocator error for 100s of GB)
    (_set_meta("num_classes", 10**9), r"model_meta: entry 'num_classes' is not an integer in \[1, 100000\] "
                                      r"\(got 1000000000\)$"),
    (_set_meta("width", 1e5), r"model_meta: entry 'width' is not a number in \(0, 64\] \(a width multiplier\) "
                              r"\(got 100000.0\)$"),
    (_set_meta("input_shape", [1, 10**6, 28]), "entry 'input_shape' is not a list of integers"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_entries_give_one_line_naming_the_file(good, tmp_path, change, match):
    path = tmp_path / "bad.pt"
    torch.save(change(good), path)
    with pytest.raises(CheckpointError, match=match) as error:
        load_model(path)
    assert str(path) in _one_line(str(error.value))


@pytest.mark.parametrize("key", ["optimizer", "scheduler", "rng", "epoch"])
def test_resume_needs_the_training_state(good, tmp_path, key):
    path = tmp_path / "bad.pt"
    torch.save(_drop(key)(good), path)
    read_checkpoint(path)  # enough to evaluate
    with pytest.raises(CheckpointError, match=f"has no '{key}' entry"):
        read_checkpoint(path, resume=True)


def test_a_wrong_random_state_is_refused_on_resume(good, tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({**good, "rng": {**good["rng"], "numpy": "MT19937"}}, path)
    with pytest.raises(CheckpointError, match="entry 'rng' is not a random state"):
        read_checkpoint(path, resume=True)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_damaged_files_give_one_line(run_dir, tmp_path, content):
    path = tmp_path / "damaged.pt"
    whole = (run_dir / "checkpoint.pt").read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if content == "truncated" else content)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as error:
        read_checkpoint(path)
    assert str(path) in _one_line(str(error.value))


def test_a_folder_or_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nothing.pt")


def test_a_state_that_does_not_fit_is_listed_in_one_line(good):
    model = pni.create_model("lenet5", in_channels=1)  # no noise: the alphas are unexpected
    with pytest.raises(CheckpointError, match="does not fit the model") as error:
        load_state(model, good["model"], source="checkpoint 'x.pt'")
    assert "unexpected keys" in _one_line(str(error.value))


def test_a_meta_that_cannot_be_rebuilt_names_the_file(good, tmp_path):
    path = tmp_path / "bad.pt"
    torch.save(_set_meta("arch", "resnet1000")(good), path)
    with pytest.raises(CheckpointError, match="cannot rebuild its model.*resnet1000") as error:
        load_model(path)
    assert str(path) in _one_line(str(error.value))


# --- writing -----------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoint_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_save({"x": torch.zeros(2)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert temp_files(path) == []


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_save({"x": torch.zeros(2)}, tmp_path / "c.pt")
    assert synced == [False, True]  # the file, then its folder


def _assert_disk_error_is_clean(path: Path, before: bytes, error: CheckpointError, reason: str) -> None:
    message = _one_line(str(error))
    assert message.startswith(f"cannot write checkpoint {str(path)!r}") and reason in message
    assert path.read_bytes() == before  # the previous checkpoint is untouched
    assert temp_files(path) == []


def test_disk_full_is_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = atomic_save({"epoch": 1}, tmp_path / "c.pt")
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError) as error:
        atomic_save({"epoch": 2, "w": torch.zeros(1000)}, path)
    _assert_disk_error_is_clean(path, before, error.value, "No space left on device")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE write failures are Linux's")
def test_a_real_failed_write_is_one_line_and_leaves_no_temp_file(tmp_path):
    """The kernel refuses the write itself (file size limit), not a mocked call."""
    import resource
    import signal

    path = atomic_save({"epoch": 1}, tmp_path / "c.pt")
    before = path.read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    try:
        with pytest.raises(CheckpointError) as error:
            atomic_save({"epoch": 2, "w": torch.zeros(1 << 20)}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    _assert_disk_error_is_clean(path, before, error.value, "File too large")


def test_an_interrupted_save_leaves_no_temp_file(tmp_path, monkeypatch):
    def interrupted(fd: int) -> None:  # Ctrl-C once the temp file is written
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"x": 1}, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists() and temp_files(tmp_path / "c.pt") == []

