"""evaluate(): mean ± std over seeded trials, noise on and off, Table 2-style report."""
from __future__ import annotations

import pytest
import torch

import pni
from pni.evaluation.evaluator import EvaluationError, evaluate
from pni.reports import evaluation_table


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


def test_markdown_tables_have_the_paper_layout_one_per_noise_setting(noisy_model, data):
    result = evaluate(noisy_model, data, ["clean", "pgd", "fgsm"], trials=2, eps=0.1, steps=1)
    lines = evaluation_table([("PNI-W", result)]).splitlines()
    # "Test with PNI" then "Test without PNI", each a Table 2-style table of its own
    titles = [i for i, line in enumerate(lines) if line.startswith("**")]
    assert [lines[i] for i in titles] == ["**Test with PNI**", "**Test without PNI**"]
    for i in titles:
        header, rule, row = lines[i + 2], lines[i + 3], lines[i + 4]
        assert header == "| Model | Clean | PGD | FGSM | Worst case |"  # + per-sample worst case
        assert rule == "|---|---|---|---|---|"
        assert row.startswith("| PNI-W | ") and row.count("±") == 4


def test_no_evaluation_table_is_wider_than_seven_columns(noisy_model, data):
    result = evaluate(noisy_model, data, ["clean"], trials=1)
    for setting in result.accuracies.values():  # eight attacks measured: two tables per setting
        for name in ["fgsm", "pgd", "eot-pgd", "cw", "zoo", "aa-rand", "worst-case"]:
            setting[name] = setting["clean"]
    table = evaluation_table([("PNI-W", result)])
    widths = [line.count(" | ") + 1 for line in table.splitlines() if line.startswith("| ")]
    assert max(widths) <= 7 and table.count("**Test with PNI**") == 2
    assert "| Model | Clean | FGSM | PGD | EOT-PGD |" in table  # eight attacks: two tables of four
    assert "| Model | C&W | ZOO | AA-rand | Worst case |" in table


def test_bad_trials_and_unknown_attack_are_clear_errors(noisy_model, data):
    with pytest.raises(EvaluationError, match="trials"):
        evaluate(noisy_model, data, ["clean"], trials=0)
    with pytest.raises(pni.attacks.AttackError, match="unknown attack 'deepfool'"):
        evaluate(noisy_model, data, ["deepfool"], trials=1)
