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


def test_a_killed_evaluation_resumes_with_the_results_of_an_uninterrupted_one(tmp_path, attack_calls, capsys):
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W")
    for alpha in pni.noise.alpha_parameters(model):
        alpha.data.fill_(0.5)  # noise that flips predictions: the draws matter
    data = pni.load_dataset("mnist-sample", "test").subset(24)
    attacks = ("clean", "pgd", "eot-pgd", "fgsm")
    kw = dict(trials=2, noise="on", eps=0.1, steps=2, votes=3, attack_options={"eot": 2},
              cascade=("pgd", "eot-pgd"), batch_size=8)
    whole = pni.evaluate(model, data, attacks, **kw)
    partial = tmp_path / "partial.pt"
    attack_calls.kill_at(3)  # killed during the third attack (the cascade's second)
    with pytest.raises(KeyboardInterrupt):
        pni.evaluate(model, data, attacks, resume_file=partial, **kw)
    assert partial.exists()
    _check_partial_reads_back_the_finished_attacks(partial, whole, ["clean", "pgd"])
    attack_calls.reset()
    resumed = pni.evaluate(model, data, attacks, resume_file=partial, **kw)
    assert attack_calls.calls == 2  # the two unfinished attacks only
    for name in (*attacks, "worst-case"):
        assert torch.equal(resumed.fractions["with_noise"][name], whole.fractions["with_noise"][name]), name
        assert torch.equal(resumed.correct["with_noise"][name], whole.correct["with_noise"][name]), name
    # another evaluation (another radius) does not take the file's outcomes, and says it replaces them
    attack_calls.reset()
    capsys.readouterr()
    pni.evaluate(model, data, attacks, resume_file=partial, **{**kw, "eps": 0.2})
    assert attack_calls.calls == 4
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and f"{partial} holds the finished work of another evaluation" in warning
    # nor does a torn file stop one
    partial.write_bytes(b"not a torch file")
    attack_calls.reset()
    pni.evaluate(model, data, attacks, resume_file=partial, **kw)
    assert attack_calls.calls == 4


def test_pni_eval_interrupted_keeps_its_finished_attacks_and_the_same_command_resumes(tmp_path, attack_calls,
                                                                                       capsys):
    from pni.cli import app as cli
    from pni.models.hub import default_root, pretrained_entry
    from pni.runs import PARTIAL_EVALUATION

    out = tmp_path / "eval"
    argv = ["eval", str(default_root() / pretrained_entry("lenet5-pni-w").path), "--dataset", "mnist-sample",
            "--n", "12", "--attacks", "clean,pgd,fgsm", "--trials", "1", "--steps", "2", "--out", str(out)]
    attack_calls.kill_at(3)
    assert cli.main(argv) == 130
    stopped = capsys.readouterr().err
    assert "the same command resumes" in stopped and (out / PARTIAL_EVALUATION).exists()
    # and what it has finished: clean and PGD with the noise on (killed in the third attack, FGSM)
    finished = next(line for line in stopped.splitlines() if "finished so far (" in line)
    assert "% of the work): with noise: clean " in finished and ", pgd " in finished and "fgsm" not in finished
    attack_calls.reset()
    assert cli.main(argv) == 0
    assert "resuming" in capsys.readouterr().err
    assert attack_calls.calls == 6 - 2  # clean, pgd, fgsm with and without noise; two were finished
    assert (out / "results.json").exists() and not (out / PARTIAL_EVALUATION).exists()


def test_with_the_noise_off_eot_zoo_and_eot_pgd_reuse_their_one_draw_twins_exactly(noisy_model, data, monkeypatch):
    import sys

    gradient, zoo_module = sys.modules["pni.attacks.gradient"], sys.modules["pni.attacks.zoo"]
    calls = {"zoo": [], "pgd": []}
    real_zoo, real_pgd = zoo_module.zoo, gradient.pgd
    monkeypatch.setattr(zoo_module, "zoo", lambda *a, **k: calls["zoo"].append(k.get("eot")) or real_zoo(*a, **k))
    monkeypatch.setattr(gradient, "pgd", lambda *a, **k: calls["pgd"].append(a[7] if len(a) > 7 else 1)
                        or real_pgd(*a, **k))
    options = {"zoo": {"steps": 3, "coords": 8}, "eot": 3}
    both = evaluate(noisy_model, data, ["clean", "pgd", "eot-pgd", "zoo", "eot-zoo"], trials=1, eps=0.1, steps=2,
                    votes=3, attack_options=options)
    # with the noise on every attack runs; with it off EOT-ZOO and EOT-PGD are their twins, run once
    assert sorted(calls["zoo"]) == [1, 1, 10] and sorted(calls["pgd"]) == [1, 1, 3]
    alone = evaluate(noisy_model, data, ["clean", "eot-pgd", "eot-zoo"], trials=1, eps=0.1, steps=2, votes=3,
                     attack_options=options)
    for name in ("eot-pgd", "eot-zoo"):   # exactly what running them with the noise off gives
        assert torch.equal(both.fractions["without_noise"][name], alone.fractions["without_noise"][name])
        assert torch.equal(both.correct["without_noise"][name], alone.correct["without_noise"][name])
    assert torch.equal(both.extras["without_noise"]["eot-zoo"]["l2"], alone.extras["without_noise"]["eot-zoo"]["l2"])
    assert both.correct["with_noise"]["eot-zoo"].shape == both.correct["with_noise"]["zoo"].shape


def _check_partial_reads_back_the_finished_attacks(partial, whole, finished):
    from pni.evaluation import partial_evaluation

    found = partial_evaluation(partial)
    assert found is not None and 0 < found.share_done < 1 and found.seconds > 0
    result = found.evaluation
    assert list(result.accuracies["with_noise"]) == finished  # the running attack and the rest: absent
    for name in finished:
        assert torch.equal(result.fractions["with_noise"][name], whole.fractions["with_noise"][name]), name
        assert result.vote_accuracies["with_noise"][name] == whole.vote_accuracies["with_noise"][name]
    assert (result.n, result.seeds, result.votes) == (whole.n, whole.seeds, whole.votes)
    assert result.attacks["pgd"] == whole.attacks["pgd"]  # its parameters, cascade label included
    assert "worst-case" not in result.attacks  # not every attack is done
    written = found.to_json()
    assert written["partial"]["share_done"] == found.share_done and written["code"]["pni"] == pni.__version__
    assert written["accuracy_percent"]["with_noise"]["pgd"] == whole.summary()["with_noise"]["pgd"]


def test_a_partial_file_without_its_evaluations_head_reads_as_nothing(tmp_path):
    from pni.evaluation import partial_evaluation
    from pni.evaluation.resume import save_partial

    fraction = torch.ones(1, 4)
    save_partial(tmp_path / "old.pt", "key", {"with_noise": {"clean": {"fraction": fraction, "correct": fraction > 0}}})
    assert partial_evaluation(tmp_path / "old.pt") is None  # written before partial files had a head
    assert partial_evaluation(tmp_path / "missing.pt") is None
