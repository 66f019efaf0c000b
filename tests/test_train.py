"""Adversarial training (Eq. 10-12): it helps, alpha learns, resume is exact, NaN stops."""
from __future__ import annotations

import json

import pytest
import torch

import pni
from pni.checkpoint import read_checkpoint
from pni.config import TrainConfig
from pni.evaluation.evaluator import accuracy
from pni.training.trainer import RunExistsError, Trainer, TrainingError, build_model, fit


@pytest.fixture(scope="module")
def mnist():
    train = pni.load_dataset("mnist-sample", "train").subset(1024)
    test = pni.load_dataset("mnist-sample", "test").subset(256)
    return train, test


def _config(**changes) -> TrainConfig:
    base = dict(model="lenet5", dataset="mnist-sample", location="W", epochs=2, batch_size=64,
                lr=0.05, milestones=[], eps=0.1, step_size=0.03, steps=3, eval_subset=64,
                progress=False, seed=0)
    return TrainConfig(**(base | changes)).validate()


def _train(data, **changes):
    config = _config(**changes)
    torch.manual_seed(config.seed)
    model = build_model(config, data[0])
    return model, fit(model, data[0], config, data[1])


def test_adversarial_training_beats_plain_training_under_pgd(mnist):
    _, test = mnist
    x, y = test.tensors()
    scores = {}
    for adversarial in (False, True):
        model, _ = _train(mnist, location=None, adversarial=adversarial, epochs=3)
        attack = (lambda m, xb, yb: pni.attacks.pgd(m, xb, yb, 0.1, 0.03, 10))
        scores[adversarial] = accuracy(model, x, y, attack=attack)
    assert scores[True] > scores[False] + 0.1, scores


def test_alpha_receives_a_gradient_and_moves(mnist):
    model, result = _train(mnist, epochs=1)
    start = result.history[0]["alphas"]
    assert set(start) == {"conv0:W", "conv1:W", "fc0:W", "fc1:W", "fc2:W"}
    assert all(value != 0.25 for value in start.values())
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in pni.alphas(model).values())


def test_weight_decay_never_touches_alpha(mnist):
    """One Nesterov SGD step: alpha moves by exactly -lr*(1+m)*grad, with no decay term."""
    config = _config(weight_decay=5.0, lr=0.1)
    torch.manual_seed(0)
    model = build_model(config, mnist[0])
    trainer = Trainer(model, mnist[0], config)
    before = {k: a.detach().clone() for k, a in pni.alphas(model).items()}
    weight_before = model.conv0.parametrizations.weight.original.detach().clone()
    x, y = next(iter(trainer.loader))
    trainer.train_step(x, y, adversarial=True)
    for key, alpha in pni.alphas(model).items():
        expected = before[key] - 0.1 * (1 + 0.9) * alpha.grad
        assert torch.allclose(alpha.detach(), expected, atol=1e-7), key
    # ... while the weights do feel the decay
    weight = model.conv0.parametrizations.weight.original
    grad = weight.grad
    no_decay = weight_before - 0.1 * 1.9 * grad
    assert not torch.allclose(weight.detach(), no_decay, atol=1e-4)


def test_fixed_alpha_baseline_keeps_alpha(mnist):
    model, _ = _train(mnist, epochs=1, fixed_alpha=0.1)
    assert all(a.item() == pytest.approx(0.1) for a in pni.alphas(model).values())


def test_adv_noise_off_generates_examples_without_noise(mnist, monkeypatch):
    seen = []
    original = pni.training.trainer.pgd_unchecked

    def spy(model, *args, **kwargs):
        seen.append(all(m.enabled for m in pni.noise_modules(model).values()))
        seen.append(model.training)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(pni.training.trainer, "pgd_unchecked", spy)
    config = _config(adv_noise=False, eval_subset=0, epochs=1)
    model = build_model(config, mnist[0])
    trainer = Trainer(model, mnist[0].subset(64), config)
    x, y = next(iter(trainer.loader))
    trainer.train_step(x, y, adversarial=True)
    assert seen == [False, False]  # noise off and BatchNorm/eval mode while generating
    assert all(m.enabled for m in pni.noise_modules(model).values())  # restored
    assert model.training


def test_warmup_epochs_are_clean_only(mnist):
    _, result = _train(mnist, epochs=2, warmup_epochs=1, eval_subset=0)
    assert [r["adversarial"] for r in result.history] == [False, True]
    assert "train_loss_adv" not in result.history[0] and "train_loss_adv" in result.history[1]


def test_resume_equals_uninterrupted_training(mnist, tmp_path):
    train, test = mnist
    train = train.subset(256)

    def run(out, epochs, resume=False):
        config = _config(epochs=epochs, milestones=[1])
        torch.manual_seed(123)
        model = build_model(config, train)
        fit(model, train, config, test, out_dir=out, resume=resume)
        return model

    straight = run(tmp_path / "straight", 2)
    run(tmp_path / "split", 1)
    resumed = run(tmp_path / "split", 2, resume=True)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert read_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 2


def test_non_finite_alpha_stops_the_run_and_keeps_the_last_checkpoint(mnist, tmp_path):
    train = mnist[0].subset(256)
    config = _config(epochs=3)
    model = build_model(config, train)

    def poison(model, epoch, step):
        if epoch == 1 and step == 1:
            with torch.no_grad():
                pni.alphas(model)["conv1:W"].fill_(float("nan"))

    with pytest.raises(TrainingError, match=r"conv1:W"):
        fit(model, train, config, mnist[1], out_dir=tmp_path, step_callback=poison)
    checkpoint = read_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 1
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_an_output_folder_with_another_run_is_refused(mnist, tmp_path):
    train = mnist[0].subset(64)
    config = _config(epochs=1, adversarial=False, eval_subset=0)
    fit(build_model(config, train), train, config, out_dir=tmp_path)
    with pytest.raises(RunExistsError, match="already holds a run"):
        fit(build_model(config, train), train, config, out_dir=tmp_path)
    fit(build_model(config, train), train, config, out_dir=tmp_path, overwrite=True)


def test_checkpoint_rebuilds_the_model_with_its_noise(mnist, tmp_path):
    train = mnist[0].subset(64)
    config = _config(epochs=1, location="W+A-a", granularity="channel", eval_subset=0)
    model = build_model(config, train)
    fit(model, train, config, out_dir=tmp_path)
    loaded, checkpoint = pni.models.load_model(tmp_path / "checkpoint.pt")
    assert checkpoint["config"]["location"] == "W+A-a"
    assert pni.injection_spec(loaded).granularity == "channel"
    for (k1, a1), (k2, a2) in zip(pni.alphas(model).items(), pni.alphas(loaded).items(), strict=True):
        assert k1 == k2 and torch.equal(a1.detach(), a2.detach())


def test_max_minutes_stops_after_an_epoch_and_resume_finishes_the_run(mnist, tmp_path):
    config = _config(epochs=3)
    torch.manual_seed(0)
    first = fit(build_model(config, mnist[0]), mnist[0], config, mnist[1], out_dir=tmp_path,
                max_minutes=1e-6)
    assert first.stopped_early and [r["epoch"] for r in first.history] == [1]
    torch.manual_seed(0)
    rest = fit(build_model(config, mnist[0]), mnist[0], config, mnist[1], out_dir=tmp_path,
               resume=True, max_minutes=60)
    assert not rest.stopped_early and [r["epoch"] for r in rest.history] == [1, 2, 3]
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 3


def test_per_epoch_evaluation_uses_a_stratified_test_sample(mnist):
    config = _config(eval_subset=40)
    trainer = Trainer(build_model(config, mnist[0]), mnist[0], config, mnist[1])
    counts = torch.bincount(trainer.eval_pair[1], minlength=10)
    assert counts.min() == 4 and counts.max() == 4  # 40 images, 10 classes, 4 of each


def test_training_on_data_missing_classes_warns_once(mnist, capsys):
    x, y = mnist[0].tensors()
    keep = y < 5
    config = _config(eval_subset=0)
    Trainer(build_model(config, mnist[0]), (x[keep], y[keep]), config)
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "5 of the 10 classes" in err


def test_input_noise_augments_every_training_input_and_nothing_else(mnist):
    x, y = mnist[0].tensors()
    x, y = x[:32], y[:32]
    losses = {}
    for sigma in (0.0, 0.5):
        config = _config(location=None, input_noise=sigma, eval_subset=0)
        trainer = Trainer(build_model(config, mnist[0]), mnist[0], config)
        with torch.no_grad():
            losses[sigma] = [float(trainer.step_losses(x, y, False)[0]) for _ in range(2)]
    assert losses[0.0][0] == losses[0.0][1]          # no model noise, no input noise: deterministic
    assert losses[0.5][0] != losses[0.5][1]          # fresh Gaussian input noise at every step
    assert abs(losses[0.5][0] - losses[0.0][0]) > 1e-4
