"""Up-front estimates: passes per image of each attack, the measured pass rate, and the line
pni eval / pni audit / pni certify print before a long run."""
from __future__ import annotations

import pytest
import torch

import pni
from pni.evaluation import estimate as work_estimate
from pni.evaluation.evaluator import evaluate_checkpoint
from pni.evaluation.estimate import announce, attack_passes, evaluation_passes, measure_pass_rate


def _checkpoint(tmp_path) -> str:
    from pni.checkpoint import FORMAT, VERSION, atomic_save
    from pni.models import model_meta

    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W")
    path = tmp_path / "run" / "checkpoint.pt"
    atomic_save({"format": FORMAT, "version": VERSION, "model": model.state_dict(),
                 "model_meta": model_meta(model), "config": {"dataset": "mnist-sample", "eps": 0.3}}, path)
    return str(path)


def test_passes_count_steps_eot_and_votes():
    honest = {"attacks": ["clean", "eot-pgd", "aa-rand"], "votes": 10, "trials": 1, "noise": False,
              "attack_options": {"eot": 10, "aa": {"n_iter": 10, "eot_iter": 10}}}
    assert attack_passes("pgd", {"votes": 1}, 7) == pytest.approx(7 + 1 / 3)
    assert attack_passes("eot-pgd", honest, 7) == pytest.approx(70 + 10 / 3)
    assert attack_passes("aa-rand", honest, 7) == pytest.approx(200 + 10 / 3)
    assert evaluation_passes(honest, 7) == pytest.approx(10 / 3 + 70 + 10 / 3 + 200 + 10 / 3)
    # with the noise off too: a pni model is then deterministic, one draw per step
    assert evaluation_passes({**honest, "trials": 5, "noise": True}, 7) == pytest.approx(
        5 * (evaluation_passes(honest, 7) + evaluation_passes(honest, 7, randomized=False)))
    # a deterministic model is attacked with one draw per step, as evaluate does
    assert evaluation_passes(honest, 7, randomized=False) == pytest.approx(10 / 3 + 7 + 10 / 3 + 20 + 10 / 3)
    # a cascade runs each later attack on the images still robust only
    cascaded = {**honest, "cascade": ["eot-pgd", "aa-rand"]}
    assert evaluation_passes(cascaded, 7, reached={"eot-pgd": 0.5, "aa-rand": 0.2}) == pytest.approx(
        10 / 3 + 0.5 * (70 + 10 / 3) + 0.2 * (200 + 10 / 3))
    assert evaluation_passes(cascaded, 7) == evaluation_passes(honest, 7)  # reach unknown: every image
    # Square: forward passes only, one per query and draw (one draw on a deterministic model)
    square = {"votes": 10, "attack_options": {"square": {"n_queries": 300, "eot": 20}}}
    assert attack_passes("square", square, 7) == pytest.approx(300 * 20 / 3 + 10 / 3)
    assert attack_passes("square", square, 7, randomized=False) == pytest.approx(300 / 3 + 10 / 3)
    # C&W-EOT: every step over its draws; ZOO and EOT-ZOO: forward passes, one per query and draw
    cw = {"votes": 10, "attack_options": {"cw_profile": "strong", "cw": {"steps": 200, "eot": 5}}}
    assert attack_passes("cw", cw, 7) == pytest.approx(200 * 9 * 5 + 10 / 3)
    assert attack_passes("cw", cw, 7, randomized=False) == pytest.approx(200 * 9 + 10 / 3)
    zoo = {"votes": 10, "attack_options": {"zoo": {"steps": 50}}}
    assert attack_passes("zoo", zoo, 7) == pytest.approx(50 * 257 / 3 + 10 / 3)
    assert attack_passes("eot-zoo", zoo, 7) == pytest.approx(10 * 50 * 257 / 3 + 10 / 3)
    assert attack_passes("eot-zoo", zoo, 7, randomized=False) == attack_passes("zoo", zoo, 7)


def test_the_reproduce_estimate_of_a_cascade_uses_the_runs_paper_accuracies(tmp_path):
    from pni.files import write_json
    from pni.reproduce.estimate import cascade_reach
    from pni.reproduce.steps import Step

    settings = {"attacks": ["clean", "eot-pgd", "aa-rand"], "cascade": ["eot-pgd", "aa-rand"]}
    step = Step("eval", "run/eval-honest-x", needs=("run",), settings=settings)
    assert cascade_reach(tmp_path, step, settings) is None
    write_json({"accuracy_percent": {"with_noise": {"clean": {"mean": 80.0}, "pgd": {"mean": 40.0}}}},
               tmp_path / "run" / "eval-paper-y" / "results.json")
    assert cascade_reach(tmp_path, step, settings) == {"eot-pgd": 0.8, "aa-rand": 0.4}
    # ZOO stops at once on the images the model already misclassifies: it works on the clean share
    zoo = {"attacks": ["clean", "zoo", "eot-zoo"], "votes": 10, "attack_options": {"zoo": {"steps": 50}}}
    assert cascade_reach(tmp_path, step, zoo) == {"zoo": 0.8, "eot-zoo": 0.8}
    assert evaluation_passes({**zoo, "trials": 1, "noise": False}, 7, reached={"zoo": 0.8, "eot-zoo": 0.8}) == \
        pytest.approx(10 / 3 + 0.8 * (attack_passes("zoo", zoo, 7) + attack_passes("eot-zoo", zoo, 7)))


def test_pass_rate_is_measured_and_leaves_the_model_as_it_was():
    model = pni.inject(pni.create_model("lenet5"), "W").train()
    rate = measure_pass_rate(model, torch.rand(8, 1, 28, 28))
    assert rate > 0 and model.training
    assert all(p.grad is None for p in model.parameters())


def test_only_long_runs_are_announced_and_the_longest_suggest_n(capsys):
    assert announce("pni eval", 30, 100, 10) is None
    line = announce("pni eval", 2 * 3600, 10000, 700)
    assert "about 2.0 h" in line and "10000 images" in line and "--n" in line
    assert line in capsys.readouterr().err


def test_pni_eval_says_how_long_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(work_estimate, "measure_pass_rate", lambda model, x: 0.05)  # a very slow machine
    evaluate_checkpoint(_checkpoint(tmp_path), attacks=("clean", "pgd"), trials=1, n=10, steps=2,
                            noise=False, progress=True)
    err = capsys.readouterr().err
    assert "pni eval: about" in err and "10 images" in err
    evaluate_checkpoint(_checkpoint(tmp_path), attacks=("clean",), trials=1, n=10, noise=False)
    assert "pni eval: about" not in capsys.readouterr().err   # no progress: not interactive, no line


def test_pni_certify_says_how_long_before_it_starts(tmp_path, capsys, monkeypatch):
    from pni.certification.smoothing import certify_checkpoint

    assert work_estimate.certify_seconds(100, 100, 2000, 700.0) == pytest.approx(100 * 2100 / 2100)
    monkeypatch.setattr(work_estimate, "measure_pass_rate", lambda model, x: 0.05)  # a very slow machine
    certify_checkpoint(_checkpoint(tmp_path), sigma=0.25, n0=10, n=20, subset=4, batch_size=20, progress=True)
    err = capsys.readouterr().err
    assert "pni certify: about" in err and "4 images" in err
    certify_checkpoint(_checkpoint(tmp_path), sigma=0.25, n0=10, n=20, subset=4, batch_size=20)
    assert "pni certify: about" not in capsys.readouterr().err


def test_the_noise_off_half_counts_eot_zoo_as_free_when_zoo_runs_beside_it():
    settings = {"attacks": ("clean", "zoo", "eot-zoo"), "votes": 10, "attack_options": {"zoo": {"steps": 50}}}
    noisy = sum(attack_passes(a, settings, 7, True) for a in settings["attacks"])
    off = sum(attack_passes(a, settings, 7, False) for a in ("clean", "zoo"))   # EOT-ZOO is ZOO there
    assert evaluation_passes(settings, 7, randomized=True) == pytest.approx(noisy + off)
    alone = {**settings, "attacks": ("clean", "eot-zoo")}   # without its twin it runs
    assert evaluation_passes(alone, 7, randomized=False) == pytest.approx(
        2 * sum(attack_passes(a, alone, 7, False) for a in alone["attacks"]))
