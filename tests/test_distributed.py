"""torchrun + DistributedDataParallel: 2 CPU processes (gloo), tiny models, real MNIST sample.

One torchrun job (tests/_ddp_worker.py) runs every 2-rank scenario; the single-process
references run here. A further job drives the ``pni`` command line under torchrun.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import _ddp_worker as worker
import pytest
import torch

import pni
from pni.cli import app as cli
from pni import distributed
from pni.checkpoint import read_checkpoint
from pni.models import load_model
from pni.config import ConfigError
from pni.evaluation.evaluator import evaluate
from pni.training.trainer import build_model

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs a 2-process torchrun job; a job that failed is started once more on a new port
    (the free port is chosen before torchrun binds it, so another socket can take it in
    between), with the first failure's output kept in a warning."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                   "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0 or attempt == 1:
            return proc
        warnings.warn(f"torchrun failed once, retrying; its stderr ended with:\n{proc.stderr[-3000:]}")
    return proc


def _assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


def _max_difference(path_a: Path, path_b: Path) -> float:
    a, b = read_checkpoint(path_a)["model"], read_checkpoint(path_b)["model"]
    assert sorted(a) == sorted(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def plain_data():
    return pni.load_dataset("mnist-sample", "train").subset(worker.PLAIN_IMAGES)


@pytest.fixture(scope="module")
def single(tmp_path_factory, plain_data) -> Path:
    """One process, batch 64: 1 epoch (resumed on 2 ranks by the worker) and 2 epochs."""
    root = tmp_path_factory.mktemp("single")
    worker._fit(worker.plain_config(epochs=1), plain_data, None, root / "epoch1")
    worker._fit(worker.plain_config(), plain_data, None, root / "epoch2")
    return root


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, single) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(str(WORKER), str(out), str(single / "epoch1"), cwd=out)
    _assert_ok(proc)
    return out, json.loads((out / "results.json").read_text())


def test_two_ranks_use_ddp_with_half_the_batch_each(ddp):
    _, results = ddp
    assert results["world_size"] == 2 and results["backend"] == "gloo"
    assert results["adversarial"]["is_ddp"]
    assert results["adversarial"]["per_rank_batch"] == 32


def test_parameters_identical_on_both_ranks_after_every_step(ddp):
    """Weights and alphas, checked before each of the 8 PGD-training steps and at the end."""
    adv = ddp[1]["adversarial"]
    assert len(adv["identical"]) == 2 * 256 // 64
    assert all(adv["identical"]) and adv["final_identical"]
    assert all(abs(value - 0.25) > 1e-4 for value in adv["alphas"].values()), "alphas did not learn"


def test_noise_draws_differ_across_ranks_and_statistics_agree(ddp):
    adv = ddp[1]["adversarial"]
    assert len(adv["noise_differs"]) == 8 and all(adv["noise_differs"])
    assert adv["noise_off_equal"] == [True, True]       # same function without the noise
    assert adv["bn_identical"]                          # BatchNorm statistics averaged per epoch
    assert adv["history_identical"]                     # metrics all-reduced


def test_two_ranks_of_32_equal_one_process_of_64(ddp, single):
    out, _ = ddp
    assert _max_difference(out / "plain" / "checkpoint.pt", single / "epoch2" / "checkpoint.pt") < 1e-5
    trained = read_checkpoint(out / "plain" / "checkpoint.pt")["model"]
    start = read_checkpoint(single / "epoch1" / "checkpoint.pt")["model"]
    assert any(not torch.allclose(trained[k], start[k]) for k in trained)  # it did train
    logs = [[json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
            for folder in (out / "plain", single / "epoch2")]
    for mine, reference in zip(*logs):
        assert mine["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-5)
        assert mine["train_acc_clean"] == pytest.approx(reference["train_acc_clean"], abs=1e-9)


def test_two_forwards_one_backward_average_the_gradient_exactly_once(ddp):
    grad = ddp[1]["gradient"]
    assert grad["grads_identical"]
    assert grad["reference_scale"] > 1e-3
    assert grad["max_difference"] < 1e-6 * max(1.0, grad["reference_scale"])


def test_two_rank_checkpoint_resumes_in_one_process(ddp, single, plain_data, tmp_path):
    out, _ = ddp
    checkpoint = read_checkpoint(out / "plain-1" / "checkpoint.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng_ranks"]) == 2
    assert not any(key.startswith("module.") for key in checkpoint["model"])
    load_model(out / "plain-1" / "checkpoint.pt")  # loadable without DDP
    run = tmp_path / "run"
    shutil.copytree(out / "plain-1", run)
    _, result = worker._fit(worker.plain_config(), plain_data, None, run, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert "reseeded" in result.history[-1]["note"]
    assert _max_difference(run / "checkpoint.pt", single / "epoch2" / "checkpoint.pt") < 1e-5


def test_one_process_checkpoint_resumes_on_two_ranks(ddp, single):
    out, results = ddp
    assert results["plain"]["start_epoch"] == 1
    assert "written by 1 process(es) with 2" in results["plain"]["note"]
    resumed = out / "single-resumed"
    assert len((resumed / "train_log.jsonl").read_text().splitlines()) == 2
    assert _max_difference(resumed / "checkpoint.pt", single / "epoch2" / "checkpoint.pt") < 1e-5


def test_resume_with_the_same_ranks_restores_every_rank_exactly(ddp):
    """Noise and PGD starts make this run random: equality needs each rank's own RNG state."""
    adv = ddp[1]["adversarial"]
    assert adv["resume_start_epoch"] == 1 and adv["resume_equal"]


def test_sharded_evaluation_equals_single_process(ddp, plain_data):
    out, results = ddp
    ev = results["eval"]
    assert ev["n"] == worker.EVAL_N and ev["settings"] == ["with_noise", "without_noise"]
    assert ev["masks_equal"] and ev["accuracies_equal"]
    assert ev["accuracies"]["without_noise"]["clean"][0] > 0.6             # a trained model
    # again in this process, from the model the ranks evaluated
    saved = torch.load(out / "eval.pt", weights_only=True)
    trials = saved["correct"]["with_noise"]["clean"]
    assert not torch.equal(trials[0], trials[1])  # trials draw noise (accuracies may tie by chance)
    model = build_model(worker.plain_config(), plain_data)
    pni.inject(model, "W", init_alpha=0.5)
    model.load_state_dict(saved["model"])
    model.to(memory_format=torch.channels_last)  # as Trainer left it: randn_like follows the layout
    x, y = pni.load_dataset("mnist-sample", "test").subset(worker.EVAL_N).tensors()
    single = evaluate(model, (x, y), **worker.EVAL_KWARGS)
    for setting, per_attack in single.correct.items():
        for name, mask in per_attack.items():
            assert torch.equal(mask, saved["correct"][setting][name]), (setting, name)


def test_torchrun_cli_trains_on_two_ranks_and_evaluates_sharded(tmp_path):
    run = tmp_path / "run"
    proc = _torchrun("-m", "pni", "train", "--preset", "mnist-lenet", "--scale", "smoke",
                     "--train-subset", "128", "--eval-subset", "32", "--steps", "2",
                     "--progress", "false", "--out", str(run), "--overwrite", cwd=tmp_path)
    _assert_ok(proc)  # (--overwrite: a retried launch replaces what a failed first one left)
    assert proc.stdout.count("training lenet5") == 1    # only rank 0 prints
    assert read_checkpoint(run / "checkpoint.pt")["world_size"] == 2
    args = [str(run / "checkpoint.pt"), "--num-images", "100", "--trials", "2", "--attacks", "clean,fgsm",
            "--batch-size", "32"]
    proc = _torchrun("-m", "pni", "eval", *args, "--out", str(tmp_path / "sharded"), cwd=tmp_path)
    _assert_ok(proc)
    assert proc.stdout.count("written:") == 1
    assert cli.main(["eval", *args, "--out", str(tmp_path / "single")]) == 0
    sharded, one = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("sharded", "single"))
    assert sharded["accuracy_per_trial"] == one["accuracy_per_trial"]


# --- single-process checks of the helpers ----------------------------------------------

def test_global_batch_must_split_evenly():
    assert distributed.split_batch(128, 4) == 32
    with pytest.raises(ConfigError, match="batch_size=100.*divisible.*3"):
        distributed.split_batch(100, 3)


@pytest.mark.parametrize("n, batch, world", [(200, 64, 2), (1000, 256, 3), (10, 64, 4), (129, 32, 2)])
def test_shards_tile_the_batch_grid(n, batch, world):
    shards = [distributed.shard_range(n, batch, r, world) for r in range(world)]
    assert shards[0][0] == 0 and shards[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    assert all(lo % batch == 0 for lo, hi in shards if hi > lo)


def test_rank_seeds():
    assert distributed.rank_seed(5, 0) == 5
    assert len({distributed.rank_seed(5, r) for r in range(4)}) == 4


def test_single_process_is_left_alone():
    assert not distributed.launched() and not distributed.is_initialized()
    assert distributed.init("cpu") == torch.device("cpu")
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.on_main(lambda: 3) == 3


def test_missing_torchrun_variable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(distributed.DistributedError, match="MASTER_ADDR.*torchrun"):
        distributed.init("cpu")


def test_sync_bn_needs_cuda():
    model = pni.create_model("resnet20", width=0.25)
    with pytest.raises(ConfigError, match="sync_bn.*CUDA"):
        distributed.wrap(model, torch.device("cpu"), sync_bn=True)
