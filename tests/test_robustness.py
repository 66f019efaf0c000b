"""Issue 9: same seed -> same bytes; a crash or a signal at any point loses nothing and resume
is exact; a diverged state is never saved; resume refuses another config; evaluation and
attacks refuse inputs that do not fit the model and leave its modes alone."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pni
import pni.training.trainer
from pni.cli import app as cli
from pni.training import run_folder as runfolder
from pni.attacks import AttackError, cw_l2, fgsm, pgd, zoo
from pni.checkpoint import read_checkpoint
from pni.files import temp_files
from pni.config import TrainConfig
from pni.data import DataError
from pni.evaluation.evaluator import EvaluationError, evaluate
from pni.training.run_folder import RunFolderError
from pni.training.trainer import Trainer, TrainingError, build_model, fit

WORKER = Path(__file__).with_name("_run_worker.py")
FILES = ("checkpoint.pt", "checkpoint.prev.pt", "train_log.jsonl", "config.json")


def _args(out: Path, *extra: str) -> list[str]:
    """A two-epoch smoke run: 256 images, 4 batches an epoch, a milestone after epoch 1."""
    return ["train", "--preset", "mnist-lenet", "--scale", "smoke", "--train-subset", "256",
            "--eval-subset", "32", "--epochs", "2", "--steps", "2", "--batch-size", "64",
            "--milestones", "1", "--progress", "false", "--out", str(out), *extra]


SCENARIOS = {  # name -> worker mode, where it stops
    "mid-checkpoint-write": ("crash", "checkpoint-write@2"),
    "between-log-and-checkpoint": ("crash", "between-log-and-checkpoint@2"),
    "mid-log-write": ("crash", "log-write@2"),
    "sigterm-mid-epoch": ("SIGTERM", "1,1"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    """The uninterrupted run (twice, same seed) in this process, while subprocesses run the
    same training and die at each scenario's point."""
    root = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {name: subprocess.Popen([sys.executable, str(WORKER), mode, target, *_args(root / name)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (mode, target) in SCENARIOS.items()}
    assert cli.main(_args(root / "reference")) == 0
    assert cli.main(_args(root / "same-seed")) == 0
    results = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        results[name] = (proc.returncode, err)
    return root, results


def _log(folder: Path) -> list[dict]:
    """The log without wall times."""
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "train_seconds"} for line in lines]


def _assert_same(a: object, b: object, where: str = "checkpoint") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    else:
        assert a == b, where


def _assert_equals_reference(root: Path, folder: Path) -> None:
    """The same checkpoint (every weight, optimizer and random state) and the same log."""
    _assert_same(torch.load(root / "reference" / "checkpoint.pt", weights_only=True),
                 torch.load(folder / "checkpoint.pt", weights_only=True))
    assert _log(folder) == _log(root / "reference")
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


# --- seeding (item 2) ---------------------------------------------------------------------

def test_two_same_seed_trainings_write_identical_checkpoints(runs):
    root, _ = runs
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "config.json"):
        assert (root / "reference" / name).read_bytes() == (root / "same-seed" / name).read_bytes(), name
    assert _log(root / "reference") == _log(root / "same-seed")


def test_build_model_draws_from_the_config_seed_only(mnist_small):
    config = _config()
    torch.manual_seed(1)
    a = build_model(config, mnist_small)
    state = torch.get_rng_state()
    b = build_model(config, mnist_small)
    assert torch.equal(state, torch.get_rng_state())  # the global stream is left alone
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_model(_config(seed=1), mnist_small)
    assert not torch.equal(a.fc2.parametrizations.weight.original, c.fc2.parametrizations.weight.original)


# --- crashes and signals (items 3 and 6) --------------------------------------------------

@pytest.mark.parametrize("name", ["mid-checkpoint-write", "between-log-and-checkpoint", "mid-log-write"])
def test_a_crash_at_each_write_then_resume_gives_the_uninterrupted_run(runs, name):
    root, results = runs
    code, err = results[name]
    folder = root / name
    assert code == 3, err  # os._exit at the fault point: no cleanup ran
    assert read_checkpoint(folder / "checkpoint.pt")["epoch"] == 1  # the last good state
    lines = len(_log(folder))
    left = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    if name == "between-log-and-checkpoint":
        assert lines == 2 and left == []  # the log is ahead of the checkpoint: trimmed on resume
    elif name == "mid-checkpoint-write":
        assert lines == 2 and left and left[0].startswith(".checkpoint.pt.")
    else:
        assert lines == 1 and left and left[0].startswith(".train_log.jsonl.")
    assert cli.main(_args(folder, "--resume")) == 0
    _assert_equals_reference(root, folder)


def test_sigterm_mid_epoch_writes_a_checkpoint_and_resume_is_exact(runs):
    root, results = runs
    code, err = results["sigterm-mid-epoch"]
    folder = root / "sigterm-mid-epoch"
    assert code == 143, err
    assert err.strip().splitlines()[-1] == (
        f"pni train: stopped by SIGTERM in epoch 2 after batch 2 of 4; checkpoint written: "
        f"{folder / 'checkpoint.pt'}; continue with --resume")
    checkpoint = read_checkpoint(folder / "checkpoint.pt", resume=True)
    assert checkpoint["epoch"] == 1 and checkpoint["position"]["batch"] == 2
    assert len(checkpoint["position"]["order"]) == 256
    assert read_checkpoint(folder / "checkpoint.prev.pt")["epoch"] == 1  # the epoch's own
    assert cli.main(_args(folder, "--resume")) == 0
    _assert_equals_reference(root, folder)


def _signal_before(monkeypatch, signum: int, epoch: int, batch: int) -> None:
    real = pni.training.trainer.fit

    def fit(*args, **kwargs):
        def callback(net, e, b):
            if (e, b) == (epoch, batch):
                os.kill(os.getpid(), signum)
        return real(*args, step_callback=callback, **kwargs)

    monkeypatch.setattr(pni.training.trainer, "fit", fit)


def test_sigint_stops_after_the_batch_with_130_and_resume_is_exact(runs, tmp_path, monkeypatch, capsys):
    root, _ = runs
    _signal_before(monkeypatch, signal.SIGINT, 0, 3)  # the last batch of the first epoch
    assert cli.main(_args(tmp_path)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pni train: stopped by SIGINT in epoch 1 after batch 4 of 4; checkpoint written: "
                   f"{tmp_path / 'checkpoint.pt'}; continue with --resume"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    monkeypatch.undo()
    assert cli.main(_args(tmp_path, "--resume")) == 0
    _assert_equals_reference(root, tmp_path)


def test_save_every_minutes_writes_mid_epoch_checkpoints_and_changes_nothing(runs, tmp_path, monkeypatch):
    root, _ = runs
    saved: list[int | None] = []
    real = runfolder.save_checkpoint

    def spy(folder, checkpoint):
        saved.append(checkpoint.get("position", {}).get("batch"))
        return real(folder, checkpoint)

    monkeypatch.setattr(runfolder, "save_checkpoint", spy)
    assert cli.main(_args(tmp_path, "--save-every-minutes", "1e-9")) == 0
    assert saved == [1, 2, 3, 4, None, 1, 2, 3, 4, None]
    _assert_equals_reference(root, tmp_path)


# --- the run folder (items 3 and 5) -------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_small():
    return pni.load_dataset("mnist-sample", "train").subset(128)


def _config(**changes) -> TrainConfig:
    base = dict(model="lenet5", dataset="mnist-sample", location="W", epochs=1, batch_size=64,
                lr=0.05, milestones=[], eps=0.1, step_size=0.05, steps=1, eval_subset=0,
                progress=False, seed=0)
    return TrainConfig(**(base | changes)).validate()


def _fit(data, out: Path, **changes):
    kwargs = {k: changes.pop(k) for k in ("resume", "overwrite", "step_callback") if k in changes}
    config = _config(**changes)
    return fit(build_model(config, data), data, config, out_dir=out, **kwargs)


def test_resume_refuses_another_config_and_lists_the_fields(mnist_small, tmp_path):
    _fit(mnist_small, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("checkpoint.pt", "train_log.jsonl")}
    with pytest.raises(RunFolderError) as error:
        _fit(mnist_small, tmp_path, epochs=2, resume=True, dataset="fashion-mnist", eps=0.2, lr=0.1)
    message = str(error.value)
    assert "\n" not in message and "checkpoint.pt" in message
    for part in ("dataset ('mnist-sample' -> 'fashion-mnist')", "eps (0.1 -> 0.2)", "lr (0.05 -> 0.1)"):
        assert part in message
    assert "epochs" not in message.split("differs in")[1].split(";")[0]  # epochs may change
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_resume_may_extend_the_epochs_and_logs_the_change(mnist_small, tmp_path):
    _fit(mnist_small, tmp_path)
    _fit(mnist_small, tmp_path, epochs=2, resume=True, fold_bn=False)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert log[1]["config_changes"] == {"epochs": [1, 2], "fold_bn": [True, False]}
    assert read_checkpoint(tmp_path / "checkpoint.prev.pt")["epoch"] == 1  # the one before is kept


def test_resume_with_nothing_to_resume_or_a_log_alone_is_an_error(mnist_small, tmp_path):
    with pytest.raises(RunFolderError, match="nothing to resume"):
        _fit(mnist_small, tmp_path, resume=True)
    (tmp_path / "train_log.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(RunFolderError, match="no checkpoint.pt"):
        _fit(mnist_small, tmp_path, resume=True)


def test_a_corrupt_log_line_is_named_on_resume(mnist_small, tmp_path):
    _fit(mnist_small, tmp_path)
    with open(tmp_path / "train_log.jsonl", "a") as log:
        log.write('{"epoch": 2, "lr"\n')
    with pytest.raises(RunFolderError, match=r"train_log.jsonl' line 2 is not valid JSON"):
        _fit(mnist_small, tmp_path, epochs=2, resume=True)


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(mnist_small, tmp_path):
    _fit(mnist_small, tmp_path)
    old = (tmp_path / "checkpoint.pt").read_bytes()

    def crash(net, epoch, step):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(mnist_small, tmp_path, overwrite=True, seed=1, step_callback=crash)
    aside = list(tmp_path.glob(".overwritten.*"))
    assert len(aside) == 1 and (aside[0] / "checkpoint.pt").read_bytes() == old
    assert not (tmp_path / "checkpoint.pt").exists()
    _fit(mnist_small, tmp_path, overwrite=True, seed=1)
    assert list(tmp_path.glob(".overwritten.*")) == []
    assert (tmp_path / "checkpoint.pt").read_bytes() != old


def test_stale_temp_files_are_removed_and_files_follow_the_umask(mnist_small, tmp_path):
    stale = [tmp_path / ".checkpoint.pt.0123456789ab.tmp", tmp_path / ".train_log.jsonl.abcdef012345.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    old = os.umask(0o002)
    try:
        _fit(mnist_small, tmp_path, epochs=2)
    finally:
        os.umask(old)
    assert not any(path.exists() for path in stale)
    assert temp_files(tmp_path / "checkpoint.pt") == []
    for name in FILES:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o664, name


# --- divergence (item 4) ------------------------------------------------------------------

@pytest.mark.parametrize("value,why", [(float("nan"), "NaN"), (3e37, "diverged")])
def test_a_state_broken_by_the_last_update_of_an_epoch_is_never_saved(mnist_small, tmp_path, value, why):
    config = _config(epochs=3)
    where: dict[str, int] = {}
    trainer = Trainer(build_model(config, mnist_small), mnist_small, config, out_dir=tmp_path,
                      step_callback=lambda net, epoch, step: where.update(epoch=epoch, step=step))

    def poison(optimizer, args, kwargs):
        if where == {"epoch": 2, "step": 1}:  # the last step of the last epoch
            with torch.no_grad():
                trainer.net.fc1.parametrizations.weight.original[0, 0] = value

    trainer.optimizer.register_step_post_hook(poison)
    with pytest.raises(TrainingError) as error:
        trainer.fit()
    message = str(error.value)
    assert "fc1.parametrizations.weight.original" in message and why in message
    checkpoint = read_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 2 and read_checkpoint(tmp_path / "checkpoint.prev.pt")["epoch"] == 1
    assert all(torch.isfinite(v).all() and v.abs().max() < 1e3
               for v in checkpoint["model"].values() if v.is_floating_point())
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 2


def test_an_exploding_loss_stops_before_the_update(mnist_small):
    config = _config()
    trainer = Trainer(build_model(config, mnist_small), mnist_small, config)
    x, y = next(iter(trainer.loader))
    with torch.no_grad():
        trainer.net.fc2.parametrizations.weight.original.mul_(1e6)  # huge, finite logits
    before = trainer.net.fc2.parametrizations.weight.original.clone()
    with pytest.raises(TrainingError, match="exploding loss"):
        trainer.train_step(x, y, adversarial=False)
    assert torch.equal(before, trainer.net.fc2.parametrizations.weight.original)


def test_weight_decay_nan_exits_non_zero(tmp_path, capsys):
    assert cli.main(_args(tmp_path, "--weight-decay", "nan")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pni train: error: config field weight_decay=nan")


# --- evaluation and attacks (item 9) ------------------------------------------------------

@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return pni.inject(pni.create_model("lenet5"), "W").eval()


@pytest.mark.parametrize("attack", [
    lambda m, x, y: pgd(m, x, y, 0.1, 0.05, 2),
    lambda m, x, y: fgsm(m, x, y, 0.1),
    lambda m, x, y: cw_l2(m, x, y, steps=1, binary_search_steps=1),
    lambda m, x, y: zoo(m, x, y, steps=1, coords=4),
], ids=["pgd", "fgsm", "cw", "zoo"])
@pytest.mark.parametrize("pixel", [float("nan"), float("inf")])
def test_attacks_refuse_non_finite_pixels(lenet, attack, pixel):
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    x[1, 0, 3, 4] = pixel
    with pytest.raises(AttackError, match="1 NaN or inf pixel"):
        attack(lenet, x, y)


def test_attacks_refuse_labels_and_channels_the_model_does_not_have(lenet):
    with pytest.raises(AttackError, match="labels must be classes 0 to 9"):
        pgd(lenet, torch.rand(2, 1, 28, 28), torch.tensor([3, 10]), 0.1, 0.05, 1)
    with pytest.raises(AttackError, match="3 channel"):
        pgd(lenet, torch.rand(2, 3, 28, 28), torch.tensor([3, 1]), 0.1, 0.05, 1)


def test_evaluation_refuses_non_finite_weights_bad_labels_and_shapes(lenet):
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    kwargs = dict(attacks=["clean"], trials=1)
    with pytest.raises(EvaluationError, match="labels must be classes 0 to 9"):
        evaluate(lenet, (x, torch.tensor([0, 1, 2, 12])), **kwargs)
    with pytest.raises(EvaluationError, match=r"images of shape \(1, 32, 32\) do not fit the model"):
        evaluate(lenet, (torch.rand(4, 1, 32, 32), y), **kwargs)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises((EvaluationError, DataError), match="NaN or inf|NaN|inf"):
        evaluate(lenet, (x, y), **kwargs)
    with torch.no_grad():
        lenet.fc0.parametrizations.weight.original[0, 0] = float("inf")
    with pytest.raises(EvaluationError, match="fc0.parametrizations.weight.original holds NaN or inf"):
        evaluate(lenet, (torch.rand(4, 1, 28, 28), y), **kwargs)


def test_attacks_run_in_eval_mode_and_restore_each_module_mode():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20", width=0.25), "W").train()
    model.stage1.eval()  # a mixed-mode model: each module gets its own mode back
    modes = {name: m.training for name, m in model.named_modules()}
    stats = model.bn0.running_mean.clone()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    pgd(model, x, y, 8 / 255, 2 / 255, 2)
    assert seen and not any(seen)                          # attacked in eval mode
    assert torch.equal(stats, model.bn0.running_mean)      # BatchNorm statistics untouched
    assert {name: m.training for name, m in model.named_modules()} == modes
    seen.clear()
    pgd(model, x, y, 8 / 255, 2 / 255, 2, keep_mode=True)  # the flag keeps the current mode
    handle.remove()
    assert all(seen) and not torch.equal(stats, model.bn0.running_mean)
