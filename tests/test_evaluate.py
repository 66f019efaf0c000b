"""evaluate(): mean ± std over seeded trials, noise on and off, Table 2-style report."""
from __future__ import annotations

import pytest
import torch

import pni
from pni.evaluate import EvaluationError, evaluate
from pni.report import evaluation_table


@pytest.fixture(scope="module")
def noisy_model():
    torch.manual_seed(0)
    return pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5).eval()


@pytest.fixture(scope="module")
def data():
    return pni.load_dataset("mnist-sample", "test").subset(48)


def test_trials_use_distinct_seeds_and_are_reproducible(noisy_model, data):
    first = evaluate(noisy_model, data, ["clean", "pgd"], trials=3, eps=0.1, steps=2, seed=7)
    again = evaluate(noisy_model, data, ["clean", "pgd"], trials=3, eps=0.1, steps=2, seed=7)
    assert first.seeds == [7, 8, 9]
    assert first.accuracies == again.accuracies
    with_noise = first.correct["with_noise"]["clean"]
    assert not all(torch.equal(with_noise[0], row) for row in with_noise[1:])  # noise: trials differ
    without = first.correct["without_noise"]["clean"]
    assert all(torch.equal(without[0], row) for row in without)  # no noise, no attack: identical
    summary = first.summary()
    assert summary["without_noise"]["clean"]["std"] == 0.0
    values = [100 * v for v in first.accuracies["with_noise"]["pgd"]]
    assert summary["with_noise"]["pgd"]["mean"] == pytest.approx(sum(values) / 3)


def test_tensor_pairs_and_datasets_give_the_same_result(noisy_model, data):
    pair = data.tensors()
    a = evaluate(noisy_model, data, ["clean", "fgsm"], trials=2, eps=0.1)
    b = evaluate(noisy_model, pair, ["clean", "fgsm"], trials=2, eps=0.1)
    assert a.accuracies == b.accuracies


def test_a_model_without_noise_is_evaluated_once_without_noise(data):
    model = pni.create_model("lenet5").eval()
    result = evaluate(model, data, ["clean"], trials=2)
    assert list(result.accuracies) == ["without_noise"]


def test_noise_false_evaluates_only_without_noise_and_keeps_the_switch(noisy_model, data):
    result = evaluate(noisy_model, data, ["clean"], trials=1, noise=False)
    assert list(result.accuracies) == ["without_noise"]
    assert all(m.enabled for m in pni.noise_modules(noisy_model).values())


def test_markdown_table_has_the_paper_layout(noisy_model, data):
    result = evaluate(noisy_model, data, ["clean", "pgd", "fgsm"], trials=2, eps=0.1, steps=1)
    table = evaluation_table([("PNI-W", result)])
    header = table.splitlines()[0]
    assert header.startswith("| Model | Test with PNI: Clean | Test with PNI: PGD | Test with PNI: FGSM")
    assert "Test without PNI: FGSM | Test without PNI: Worst case |" in header  # + per-sample worst case
    row = table.splitlines()[2]
    assert row.startswith("| PNI-W | ") and row.count("±") == 8


def test_bad_trials_and_unknown_attack_are_clear_errors(noisy_model, data):
    with pytest.raises(EvaluationError, match="trials"):
        evaluate(noisy_model, data, ["clean"], trials=0)
    with pytest.raises(pni.attacks.AttackError, match="unknown attack 'deepfool'"):
        evaluate(noisy_model, data, ["deepfool"], trials=1)
