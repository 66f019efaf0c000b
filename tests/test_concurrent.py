"""K runs trained together in one process (pni.training.concurrent) equal each run trained
alone: same checkpoints, same logs but for the wall times, also across a resume."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from pni.config import load_config, replace
from pni.training import train_run
from pni.training.concurrent import train_concurrently

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: determinism on CUDA


def _configs(epochs: int = 2) -> list:
    base = load_config("mnist-lenet", "smoke", train_subset=128, eval_subset=32, batch_size=64, steps=2,
                       epochs=epochs, progress=False, milestones=[1])
    return [base, replace(base, seed=1), replace(base, location="A-a", seed=2)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN here


def _log(folder: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("train_seconds", "concurrent")} for r in records]


def _assert_same_run(alone: Path, together: Path) -> None:
    a = torch.load(alone / "checkpoint.pt", weights_only=True)
    b = torch.load(together / "checkpoint.pt", weights_only=True)
    assert _same(a, b), [k for k in a if not _same(a[k], b.get(k))]
    assert _log(alone) == _log(together)
    assert (alone / "config.json").read_text() == (together / "config.json").read_text()


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("alone")
    folders = [root / f"run{i}" for i in range(3)]
    for config, folder in zip(_configs(), folders):
        train_run(config, folder)
    return folders


def test_runs_trained_together_equal_each_run_alone(alone, tmp_path):
    folders = [tmp_path / f"run{i}" for i in range(3)]
    results = train_concurrently(_configs(), folders)
    assert [len(r.history) for r in results] == [2, 2, 2]
    assert [r.history[-1].get("concurrent") for r in results] == [3, 3, 3]  # the wall seconds were shared
    assert "concurrent" not in json.loads((alone[0] / "train_log.jsonl").read_text().splitlines()[-1])
    assert all(r.model is not None for r in results)
    for a, b in zip(alone, folders):
        _assert_same_run(a, b)
    # the runs differ from each other: nothing was shared between them
    first, second = (torch.load(f / "checkpoint.pt", weights_only=True)["model"] for f in folders[:2])
    assert not all(torch.equal(first[k], second[k]) for k in first)


def test_together_resumed_equals_alone(alone, tmp_path):
    """One epoch together, then the second together from the checkpoints beside a run that
    starts afresh: the same as each run resumed alone (the resume logs its config change)."""
    configs = _configs()
    folders = [tmp_path / f"run{i}" for i in range(3)]
    train_concurrently([replace(c, epochs=1) for c in configs[:2]], folders[:2])
    results = train_concurrently(configs, folders, resume=[True, True, False])
    assert [r.history[-1]["epoch"] for r in results] == [2, 2, 2]
    assert results[0].history[-1]["config_changes"] == {"epochs": [1, 2]}
    for i, config in enumerate(configs[:2]):
        resumed_alone = tmp_path / f"alone{i}"
        train_run(replace(config, epochs=1), resumed_alone)
        train_run(config, resumed_alone, resume=True)
        _assert_same_run(resumed_alone, folders[i])
    _assert_same_run(alone[2], folders[2])


def test_one_failing_run_does_not_stop_the_others(alone, tmp_path):
    configs = _configs()
    folders = [tmp_path / f"run{i}" for i in range(3)]
    train_run(replace(configs[1], epochs=1), folders[1])  # a run already there: not resumed, refused
    with pytest.raises(Exception, match="run"):
        train_concurrently(configs, folders)
    _assert_same_run(alone[0], folders[0])
    _assert_same_run(alone[2], folders[2])


def test_arguments_are_checked(tmp_path):
    configs = _configs()
    with pytest.raises(ValueError, match="3 configs for 2"):
        train_concurrently(configs, [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="share a run folder"):
        train_concurrently(configs[:2], [tmp_path / "a", tmp_path / "a"])
    with pytest.raises(ValueError, match="resume has 1 values"):
        train_concurrently(configs[:2], [tmp_path / "a", tmp_path / "b"], resume=[True])


@pytest.fixture
def _deterministic_cuda():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


@pytest.mark.cuda
def test_runs_together_on_cuda_equal_alone(tmp_path, _deterministic_cuda):
    """On a GPU (each run on its own stream with its own generator state, graphed steps
    recorded again at the milestone): the same checkpoints and logs as each run alone."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    configs = [replace(c, device="cuda", train_subset=512) for c in _configs()]
    alone_folders = [tmp_path / f"alone{i}" for i in range(3)]
    for config, folder in zip(configs, alone_folders):
        train_run(config, folder)
    folders = [tmp_path / f"together{i}" for i in range(3)]
    results = train_concurrently(configs, folders)
    assert all(r.history[-1]["epoch"] == 2 for r in results)
    assert json.loads((folders[0] / "config.json").read_text())["precision"] == "tf32"
    for a, b in zip(alone_folders, folders):
        _assert_same_run(a, b)


def _train_steps(count: int) -> list:
    from pni.reproduce import get_plans, resolve

    steps = [s for s in resolve(get_plans("table2"), "smoke") if s.kind == "train"]
    assert len(steps) >= count
    return steps[:count]


def test_reproduce_trains_runs_together_as_alone(tmp_path, capsys):
    """``Runner(concurrent=K)``: the plan's runs trained K at a time give the same run folders
    (checkpoints, logs, config.json) as one at a time; timing.json says how many shared."""
    from pni.reproduce import Runner

    steps = _train_steps(3)
    alone, together = tmp_path / "alone", tmp_path / "together"
    assert Runner(alone).run(steps) == {s.key: "ran" for s in steps}
    outcome = Runner(together, concurrent=2).run(steps)
    assert outcome == {s.key: "ran" for s in steps}
    printed = capsys.readouterr().out
    assert printed.count("together with 1 other run(s)") == 2  # the third ran alone
    for step in steps:
        _assert_same_run(alone / step.key, together / step.key)
    timings = [json.loads((together / s.key / "timing.json").read_text()) for s in steps]
    assert [t.get("concurrent") for t in timings] == [2, 2, None]
    assert Runner(together, concurrent=3).run(steps) == {s.key: "reused" for s in steps}


def test_reproduce_concurrent_flag(tmp_path, capsys):
    from pni import cli
    from pni.reproduce.runner import auto_concurrency

    assert auto_concurrency("cpu") == 1
    assert cli.main(["reproduce", "table2", "--scale", "smoke", "--concurrent", "0",
                     "--out", str(tmp_path)]) == 2
    assert "--concurrent must be a whole number >= 1 or auto, got '0'" in capsys.readouterr().err


def test_a_signal_checkpoints_every_run_and_they_resume_as_alone(tmp_path):
    """SIGTERM while K runs train together: each writes a (mid-epoch) checkpoint and
    TrainingInterrupted is raised once all have; resumed together, they equal the runs alone."""
    import os
    import signal
    import threading

    from pni.training import TrainingInterrupted

    configs = [replace(c, train_subset=512, epochs=3, eval_subset=0) for c in _configs()[:2]]
    folders = [tmp_path / f"run{i}" for i in range(2)]
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(TrainingInterrupted):
            train_concurrently(configs, folders)
    finally:
        timer.cancel()
    assert all((f / "checkpoint.pt").exists() for f in folders)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
    train_concurrently(configs, folders, resume=True)
    for config, folder in zip(configs, folders):
        reference = tmp_path / f"alone-{folder.name}"
        train_run(config, reference)
        a = torch.load(reference / "checkpoint.pt", weights_only=True)
        b = torch.load(folder / "checkpoint.pt", weights_only=True)
        assert _same(a["model"], b["model"]) and _same(a["optimizer"], b["optimizer"])
        assert [r["train_loss"] for r in _log(reference)] == [r["train_loss"] for r in _log(folder)]


def test_the_concurrency_benchmark_runs_on_cpu(tmp_path, capsys):
    """benchmarks/concurrency.py (what the next GPU window measures) end to end, tiny, on CPU."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import concurrency

    assert concurrency.main(["--out", str(tmp_path), "--device", "cpu", "--model", "lenet5", "--images", "128",
                             "--ks", "1,2", "--precisions", "float32"]) == 0
    report = json.loads((tmp_path / "concurrency.json").read_text())
    assert [(r["k"], r["precision"]) for r in report["results"]] == [(1, "float32"), (2, "float32")]
    assert report["errors"] == {}
    assert "| float32 | 2 |" in (tmp_path / "concurrency.md").read_text()


@pytest.mark.cuda
def test_auto_concurrency_on_cuda_follows_the_free_memory():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from pni.reproduce.runner import MAX_CONCURRENT, RUN_MEMORY_GIB, auto_concurrency

    free = torch.cuda.mem_get_info(0)[0] / 2**30
    expected = max(1, min(MAX_CONCURRENT, int(free // RUN_MEMORY_GIB)))
    assert auto_concurrency("cuda") == expected and auto_concurrency("cuda:0") == expected
