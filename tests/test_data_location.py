"""Where a run's data is found again (issue 24, item 3): ``pni train`` stores a relative
``--data-dir`` resolved in config.json, and a run that records no data folder (the committed
``results/cpu`` checkpoints) finds ``data/`` or ``shared/data/`` above its folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pni.cli import main
from pni.data import DataError
from pni.evaluation.opened_run import data_fallbacks, open_checkpoint


def write_mnist(folder: Path, n_train: int, n_test: int) -> None:
    """The four IDX files (gzipped), random images, every class present."""
    import gzip

    import numpy as np

    from pni.data import encode_idx

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(images)))
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))

REPO = Path(__file__).resolve().parents[1]


def _train(out: str, *extra: str) -> None:
    assert main(["train", "--preset", "mnist-lenet", "--scale", "smoke", "--dataset", "mnist", "--epochs", "1",
                 "--train-subset", "20", "--eval-subset", "0", "--steps", "1", "--batch-size", "10",
                 "--progress", "false", "--threads", "1", "--out", out, *extra]) == 0


def test_a_relative_data_dir_is_stored_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "data" / "mnist", n_train=40, n_test=10)
    monkeypatch.chdir(tmp_path)
    _train("run", "--data-dir", "data")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data_dir"] == str((tmp_path / "data").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = open_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert len(run.data) == 10 and run.data_dir == config["data_dir"]
    assert config["data_location"] == {"resolved": config["data_dir"], "data_dir": "resolved"}


def test_a_data_dir_kept_as_typed_is_found_from_another_folder(tmp_path: Path, monkeypatch) -> None:
    """``pni reproduce``'s plans keep a relative data_dir as typed (it is part of a run's key);
    config.json says so and records where it pointed, and the run finds its data from anywhere."""
    from pni.config import TrainConfig, load_config
    from pni.reproduce.steps import config_key_values
    from pni.training import train_run

    write_mnist(tmp_path / "work" / "data" / "mnist", n_train=40, n_test=10)
    monkeypatch.chdir(tmp_path / "work")
    config = load_config("mnist-lenet", "smoke", dataset="mnist", data_dir="data", epochs=1, train_subset=20,
                         eval_subset=0, steps=1, batch_size=10, progress=False)
    train_run(config, tmp_path / "runs" / "a")
    recorded = json.loads((tmp_path / "runs" / "a" / "config.json").read_text())
    assert recorded["data_dir"] == "data"        # as typed: the run's key is unchanged
    assert recorded["data_location"] == {"resolved": str((tmp_path / "work" / "data").resolve()),
                                         "data_dir": "as typed"}
    # the record is not a config field, and the run's key is the plan's
    assert config_key_values(TrainConfig.from_dict(recorded)) == config_key_values(config)
    monkeypatch.chdir(tmp_path)                   # "data" does not exist here
    run = open_checkpoint(tmp_path / "runs" / "a" / "checkpoint.pt")
    assert len(run.data) == 10 and run.data_dir == recorded["data_location"]["resolved"]


def test_a_run_without_a_data_folder_finds_shared_data_above_it(tmp_path: Path, monkeypatch, capsys) -> None:
    outside = data_fallbacks(tmp_path / "checkpoint.pt")   # this machine's own, above the test's folder
    write_mnist(tmp_path / "shared" / "data" / "mnist", n_train=40, n_test=10)
    monkeypatch.setenv("PNI_DATA", str(tmp_path / "shared" / "data"))
    run_dir = tmp_path / "repo" / "results" / "cpu" / "lenet"
    _train(str(run_dir))                                         # recorded: no data folder
    assert json.loads((run_dir / "config.json").read_text())["data_dir"] is None
    monkeypatch.delenv("PNI_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    assert data_fallbacks(run_dir / "checkpoint.pt") == [tmp_path / "shared" / "data", *outside]  # nearest first
    run = open_checkpoint(run_dir / "checkpoint.pt")
    assert len(run.data) == 10 and run.data_dir == str(tmp_path / "shared" / "data")
    assert "records no data folder" in capsys.readouterr().err
    # PNI_DATA (or --data-dir) given: used as given, no fallback
    monkeypatch.setenv("PNI_DATA", str(tmp_path / "empty-cache"))
    with pytest.raises(DataError, match="not found"):
        open_checkpoint(run_dir / "checkpoint.pt")


def test_the_committed_cpu_runs_find_the_repository_data(monkeypatch, tmp_path: Path) -> None:
    checkpoint = REPO / "results" / "cpu" / "lenet5-W-at-mnist-501bbc46" / "checkpoint.pt"
    if not checkpoint.is_file() or not (REPO.parent / "shared" / "data" / "mnist").is_dir():
        pytest.skip("needs the committed results/cpu runs and ../shared/data")
    monkeypatch.delenv("PNI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run = open_checkpoint(checkpoint, n=100)
    assert len(run.data) == 100 and Path(run.data_dir).resolve() == (REPO.parent / "shared" / "data").resolve()


def test_transfer_between_committed_runs_finds_the_data_too(monkeypatch, tmp_path: Path) -> None:
    runs = REPO / "results" / "cpu"
    a, b = runs / "lenet5-W-at-mnist-501bbc46" / "checkpoint.pt", runs / "lenet5-none-at-mnist-b590ab06" / "checkpoint.pt"
    if not (a.is_file() and b.is_file() and (REPO.parent / "shared" / "data" / "mnist").is_dir()):
        pytest.skip("needs the committed results/cpu runs and ../shared/data")
    monkeypatch.delenv("PNI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["transfer", str(a), str(b), "--num-images", "10", "--trials", "1", "--steps", "2",
                 "--threads", "1", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "transfer.json").is_file()
