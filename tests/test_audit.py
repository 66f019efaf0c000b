"""The gradient-obfuscation audit (Table 7): it must flag models built to obfuscate
gradients, pass an honest adversarially trained model, and state its evidence and rules."""
from __future__ import annotations

import copy
import json
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import pni
from pni.cli import app as cli
from pni.auditing import (
    AuditError,
    AuditReport,
    audit,
    is_randomized,
    random_search,
    sweep_eot,
    sweep_eps,
    sweep_steps,
    tolerance,
)
from pni.config import TrainConfig
from pni.auditing.bench import Bench
from pni.auditing.checks import CHECKS
from pni.auditing.settings import ITEM_NAMES
from pni.evaluation.evaluator import accuracy, evaluate
from pni.reports import write_audit
from pni.training.trainer import build_model, fit

EPS = 0.2
# Small but real: 200 test images, short sweeps; every accuracy has a binomial tolerance.
FAST = dict(n=200, steps=10, random_n=50, random_samples=200, steps_values=(5, 10, 20),
            eot_ks=(1, 4, 8), unbounded_steps=50, score_n=20, score_queries=600)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(train, *, adversarial: bool, n: int, epochs: int, seed: int) -> nn.Module:
    config = TrainConfig(model="lenet5", dataset="mnist-sample", location=None, adversarial=adversarial,
                         eps=EPS, steps=5, step_size=2.5 * EPS / 5, epochs=epochs, batch_size=64,
                         lr=0.05, milestones=[], eval_subset=0, progress=False, seed=seed)
    torch.manual_seed(seed)
    subset = train.subset(n)
    model = build_model(config, subset)
    fit(model, subset, config)
    return model.eval()


@pytest.fixture(scope="module")
def mnist():
    return pni.load_dataset("mnist-sample", "train"), pni.load_dataset("mnist-sample", "test")


@pytest.fixture(scope="module")
def plain_lenet(mnist):
    """A LeNet-5 with plain (non-adversarial) training: about 90% clean, not robust."""
    return _train(mnist[0], adversarial=False, n=5000, epochs=3, seed=0)


@pytest.fixture(scope="module")
def surrogate(mnist):
    """Another plain LeNet-5 (other seed, other images): the transfer attack's source."""
    train = mnist[0].subset(torch.arange(2000, 5000))
    return _train(train, adversarial=False, n=3000, epochs=3, seed=1)


@pytest.fixture(scope="module")
def adv_lenet(mnist):
    """An honest PGD adversarially trained LeNet-5, no noise, no tricks."""
    return _train(mnist[0], adversarial=True, n=2000, epochs=3, seed=0)


class InputQuantization(nn.Module):
    """Obfuscation by a non-differentiable input quantization: round() has zero gradient
    everywhere, so gradient attacks see nothing (no straight-through estimator)."""

    def __init__(self, model: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * self.levels) / self.levels)


@pytest.fixture(scope="module")
def honest_report(adv_lenet, surrogate, mnist):
    return audit(adv_lenet, mnist[1], EPS, surrogate=surrogate, label="adv", **FAST)


def test_honest_adversarially_trained_model_passes_items_1_to_5(honest_report):
    report = honest_report
    assert not report.randomized
    for number in (1, 2, 3, 4, 5):
        item = report.item(number)
        assert item.passed is True, (number, item.summary)
    ev = report.item(1).evidence
    assert ev["fgsm_accuracy"] >= ev["pgd_accuracy"] - ev["tolerance"]
    assert report.item(3).evidence["accuracy"] <= report.item(3).evidence["threshold"]
    assert report.item(2).evidence["black_box_accuracy"]["transfer-pgd"] > report.item(2).evidence["white_box_accuracy"]
    eps_sweep = report.sweeps["eps"]
    assert eps_sweep.values[0] == 0 and eps_sweep.accuracy[0] == pytest.approx(report.clean_accuracy)
    assert eps_sweep.accuracy[-1] < eps_sweep.accuracy[0]


def test_honest_model_report_states_every_rule_and_verdict(honest_report, tmp_path):
    paths = write_audit(honest_report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert [i["number"] for i in saved["items"]] == list(range(1, 8))
    for item in saved["items"]:
        assert item["rule"] and item["summary"] and item["verdict"] in ("pass", "FAIL", "not measured")
    markdown = paths["markdown"].read_text()
    for item in honest_report.items:
        assert item.rule.replace("|", "\\|") in markdown
    assert "tol(p1, p2)" in markdown and "fig3.png" in markdown and "eot.png" in markdown
    for name in ("fig3", "eot"):
        assert paths[name].read_bytes()[:8] == PNG_MAGIC
    again = AuditReport.from_json(saved)
    assert [(i.number, i.passed) for i in again.items] == [(i.number, i.passed) for i in honest_report.items]
    assert again.sweeps["steps"].accuracy == honest_report.sweeps["steps"].accuracy


def test_input_quantization_is_flagged(plain_lenet, surrogate, mnist):
    model = InputQuantization(plain_lenet).eval()
    report = audit(model, mnist[1], EPS, surrogate=surrogate, label="quantized", **FAST)
    assert not report.passed
    # eps = 1 with zero gradients cannot reach 0%, and random points beat PGD.
    assert report.item(3).passed is False
    assert report.item(3).evidence["accuracy"] > 20
    assert report.item(4).passed is False
    assert report.item(4).evidence["random_found_pgd_missed"] >= 5
    # the same network without the quantizer is not flagged on those items
    plain = audit(plain_lenet, mnist[1], EPS, surrogate=surrogate, items=(3, 4), **FAST)
    assert plain.item(3).passed and plain.item(4).passed


def _with_fixed_noise(model: nn.Module, location: str, alpha: float) -> nn.Module:
    noisy = copy.deepcopy(model)
    pni.inject(noisy, location)
    pni.freeze_alphas(noisy, alpha)
    return noisy.eval()


def test_huge_fixed_weight_noise_is_flagged(plain_lenet, mnist):
    """Noise so large that predictions are near chance: even eps = 1 cannot reach 0%."""
    model = _with_fixed_noise(plain_lenet, "W", 2.0)
    report = audit(model, mnist[1], EPS, items=(3,), label="huge noise", **FAST)
    assert report.randomized and not report.passed
    assert report.item(3).passed is False
    assert report.item(3).evidence["accuracy"] > report.item(3).evidence["threshold"]


def test_robustness_from_input_noise_is_flagged_by_the_eot_item(adv_lenet, mnist):
    """Large fixed input noise on a robust model (clean accuracy stays high): single-draw
    PGD gradients are mostly noise, so PGD overstates the robustness and averaging over
    draws (EOT) takes it back."""
    model = _with_fixed_noise(adv_lenet, "I", 1.0)
    report = audit(model, mnist[1], EPS, items=(7,), label="input noise",
                   **{**FAST, "n": 400, "eot_ks": (1, 8, 16)})
    eot = report.item(7)
    assert report.randomized and eot.passed is False
    assert eot.evidence["drop"] > eot.evidence["limit"] >= 5.0
    sweep = report.sweeps["eot"]
    assert sweep.values == [1, 8, 16]
    assert eot.evidence["drop"] == pytest.approx(100 * (sweep.accuracy[0] - min(sweep.accuracy[1:])), abs=1e-3)
    # the same weights without the noise are not flagged: EOT changes nothing there
    assert audit(adv_lenet, mnist[1], EPS, items=(7,), **FAST).item(7).passed is True


def test_deterministic_model_eot_item_passes_without_measuring_every_k(plain_lenet, mnist):
    report = audit(plain_lenet, mnist[1], EPS, items=(7,), **FAST)
    assert report.item(7).passed is True and report.item(7).evidence["randomized"] is False
    assert report.sweeps["eot"].values == [1]


def test_item2_not_measured_without_surrogate_or_score_attack(plain_lenet, mnist, monkeypatch):
    report = audit(plain_lenet, mnist[1], EPS, items=(2,), n=50, steps=5, score_n=0)
    item = report.item(2)
    assert item.passed is None and item.verdict == "not measured"
    assert "no surrogate" in item.evidence["surrogate"] and "no surrogate" in item.summary
    assert report.passed  # nothing measured failed
    monkeypatch.setitem(sys.modules, "pni.attacks.zoo", None)  # ZOO missing: said so
    item = audit(plain_lenet, mnist[1], EPS, items=(2,), n=50, steps=5, score_n=10).item(2)
    assert item.passed is None and "pni.attacks.zoo is not available" in item.summary


def test_item2_trains_its_own_surrogate_on_train_data(plain_lenet, mnist):
    train = mnist[0].subset(torch.arange(3000, 4000))
    report = audit(plain_lenet, mnist[1], EPS, train_data=train, items=(2,), n=50, steps=5,
                   surrogate_epochs=1, surrogate_train_n=1000, score_n=0)
    item = report.item(2)
    assert item.passed is not None
    assert item.evidence["surrogate"].startswith("trained by pni: lenet5")
    assert list(item.evidence["black_box_accuracy"]) == ["transfer-pgd"]


def test_item2_score_based_attack_goes_through_pni_attacks_zoo(plain_lenet, mnist, monkeypatch):
    """The score-based half of item 2 calls ``pni.attacks.zoo.zoo`` (issue 4's API) within
    the eps-ball; a stand-in that queries only the model's scores (random search) beats PGD
    on the quantized model, and item 2 names it."""
    calls = {}

    def score_only_attack(model, x, y, steps=500, coords=128, lr=0.01, eps=None, **kwargs):
        calls.update(steps=steps, coords=coords, eps=eps, n=len(y), lr=lr)
        points, _ = random_search(model, x, y, eps, samples=400, candidates=1,
                                  generator=torch.Generator().manual_seed(0))
        return SimpleNamespace(x_adv=points[:, 0])

    monkeypatch.setitem(sys.modules, "pni.attacks.zoo", SimpleNamespace(zoo=score_only_attack))
    model = InputQuantization(plain_lenet).eval()
    report = audit(model, mnist[1], EPS, items=(2,), n=200, steps=10, score_n=200, score_queries=1000)
    item = report.item(2)
    assert calls == {"steps": 1000 // 257, "coords": 128, "eps": EPS, "n": 200, "lr": EPS / 4}
    assert item.evidence["black_box_attacks"]["zoo"]["queries_per_image"] == 3 * 257
    assert item.passed is False and item.evidence["stronger_than_white_box"] == ["zoo"]
    assert item.evidence["black_box_accuracy"]["zoo"] < item.evidence["white_box_accuracy"]


def test_sweeps_measure_the_requested_points(plain_lenet, mnist):
    x, y = mnist[1].tensors()
    data = (x[:64], y[:64])
    eps = sweep_eps(plain_lenet, data, [0.2, 0.0, 0.1], steps=3)
    assert eps.parameter == "eps" and eps.values == [0.0, 0.1, 0.2]
    assert eps.accuracy[0] == pytest.approx(accuracy(plain_lenet, *data))
    assert eps.accuracy[2] <= eps.accuracy[0]
    steps = sweep_steps(plain_lenet, data, [1, 4], eps=0.2)
    assert steps.values == [1, 4] and steps.attack["step_size"] == pytest.approx(0.5)
    eot = sweep_eot(plain_lenet, data, [1, 3], eps=0.1, steps=3)
    assert eot.accuracy[0] == eot.accuracy[1]  # deterministic model: EOT changes nothing
    with pytest.raises(AuditError, match="eps_values"):
        sweep_eps(plain_lenet, data, [0.1, 1.5])


def test_randomized_models_are_judged_over_several_draws(plain_lenet, mnist):
    noisy = _with_fixed_noise(plain_lenet, "W", 1.0)
    x, y = mnist[1].tensors()
    data = (x[:64], y[:64])
    with torch.no_grad():
        torch.manual_seed(123)
        expected = torch.stack([(noisy(data[0]).argmax(1) == data[1]).float() for _ in range(300)]).mean()
    many = [sweep_eps(noisy, data, [0.0, 0.1], steps=1, seed=s).accuracy[0] for s in range(4)]  # 10 draws
    one = [sweep_eps(noisy, data, [0.0, 0.1], steps=1, seed=s, votes=1).accuracy[0] for s in range(4)]
    assert max(abs(a - float(expected)) for a in many) < 0.1  # one weight draw per batch pass
    assert max(many) - min(many) < max(one) - min(one)
    with pytest.raises(AuditError, match="votes"):
        sweep_eps(noisy, data, [0.0, 0.1], votes=0)


def test_the_same_call_gives_the_same_report(plain_lenet, mnist):
    noisy = _with_fixed_noise(plain_lenet, "W", 0.5)
    settings = dict(items=(1, 4, 7), n=48, steps=3, random_n=8, random_samples=30, eot_ks=(1, 2))
    first = audit(noisy, mnist[1], EPS, **settings).to_json()
    torch.manual_seed(999)  # the global random state before the call does not matter
    assert audit(noisy, mnist[1], EPS, **settings).to_json() == first


def test_random_search_stays_in_the_ball_and_ranks_by_margin(plain_lenet, mnist):
    x, y = mnist[1].tensors()
    x, y = x[:4], y[:4]
    points, margins = random_search(plain_lenet, x, y, 0.1, samples=50, candidates=3,
                                    generator=torch.Generator().manual_seed(0))
    assert points.shape == (4, 3, 1, 28, 28) and margins.shape == (4, 3)
    assert (points - x[:, None]).abs().max() <= 0.1 + 1e-6
    assert points.min() >= 0 and points.max() <= 1
    assert torch.all(margins[:, :-1] <= margins[:, 1:])
    with torch.no_grad():
        logits = plain_lenet(points[:, 0])
    true = logits.gather(1, y[:, None]).squeeze(1)
    logits[torch.arange(4), y] = -torch.inf
    assert torch.allclose(true - logits.max(1).values, margins[:, 0], atol=1e-4)


def test_tolerance_and_randomness_detection(plain_lenet):
    assert tolerance(0.5, 0.5, 100) > tolerance(0.5, 0.5, 10000) >= 0.01
    assert tolerance(0.0, 0.0, 100) == 0.01
    assert tolerance(0.3, 0.6, 200) == tolerance(0.6, 0.3, 200)
    x = torch.rand(4, 1, 28, 28)
    assert not is_randomized(plain_lenet, x)
    noisy = pni.inject(copy.deepcopy(plain_lenet), "W")
    assert is_randomized(noisy, x)


def test_audit_and_eval_agree_number_for_number(plain_lenet, mnist):
    """`pni audit` and `pni eval` measure with one outcome function (pni.evaluation.evaluator.sample_outcomes)
    seeded alike: the same model, eps, steps, seed, batch size, draws and images give the
    same accuracies, per trial, exactly. Three batches of a randomized model: the seeding of
    every batch, not only the first, has to agree."""
    noisy = _with_fixed_noise(plain_lenet, "W", 0.5)
    x, y = mnist[1].tensors()
    data = (x[:40], y[:40])
    common = dict(eps=EPS, steps=3, seed=7, batch_size=16)
    ev = evaluate(noisy, data, ["clean", "pgd", "fgsm"], trials=2, votes=3, worst_case=False, **common)
    per_trial = ev.accuracies["with_noise"]

    def mean(values):
        return float(torch.tensor(values, dtype=torch.float64).mean())

    report = audit(noisy, data, items=(1,), trials=2, votes=3, **common)
    assert report.randomized
    assert report.clean_accuracy == mean(per_trial["clean"])
    evidence = report.item(1).evidence
    assert evidence["pgd_accuracy"] == round(100 * mean(per_trial["pgd"]), 4)
    assert evidence["fgsm_accuracy"] == round(100 * mean(per_trial["fgsm"]), 4)
    sweep = sweep_eps(noisy, data, [0.0, EPS], steps=3, trials=2, seed=7, batch_size=16, votes=3)
    assert sweep.accuracy == [mean(per_trial["clean"]), mean(per_trial["pgd"])]
    bench = Bench(noisy.eval(), x[:40], y[:40], trials=2, seed=7, batch_size=16, votes=3)
    assert bench.trial_accuracies(("clean",), None) == per_trial["clean"]
    step_size = ev.attacks["pgd"]["step_size"]
    assert bench.trial_accuracies(("pgd",), lambda m, xb, yb: pni.attacks.pgd(m, xb, yb, EPS, step_size, 3)) \
        == per_trial["pgd"]


def test_every_item_has_one_named_check():
    assert list(CHECKS) == list(ITEM_NAMES)
    assert all(check.number == number and check.title == ITEM_NAMES[number] for number, check in CHECKS.items())
    assert len({check.name for check in CHECKS.values()}) == len(CHECKS)
    assert {check.sweep for check in CHECKS.values()} == {None, "eps", "steps", "eot"}


@pytest.mark.parametrize("overrides, match", [
    (dict(eps=0.0), "eps"),
    (dict(items=(8,)), "items"),
    (dict(eot_ks=(1,)), "eot_ks"),
    (dict(steps=0), "steps"),
    (dict(random_samples=0), "random_samples"),
    (dict(max_eot_drop=2.0), "max_eot_drop"),
    (dict(no_such_setting=1), "unknown audit setting"),
])
def test_bad_settings_are_clear_errors(plain_lenet, mnist, overrides, match):
    kwargs = {"eps": EPS, **overrides}
    with pytest.raises(AuditError, match=match):
        audit(plain_lenet, mnist[1], **kwargs)


# --- the command line ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def pni_run(tmp_path_factory, mnist):
    """A tiny PNI-W run folder as `pni train` writes it."""
    out = tmp_path_factory.mktemp("run") / "pni-w"
    config = TrainConfig(model="lenet5", dataset="mnist-sample", location="W", eps=EPS, steps=2,
                         step_size=0.1, epochs=2, batch_size=64, lr=0.05, milestones=[],
                         eval_subset=64, progress=False, seed=0)
    subset = mnist[0].subset(512)
    torch.manual_seed(0)
    fit(build_model(config, subset), subset, config, mnist[1], out_dir=out)
    return out


CLI_FAST = ["--num-images", "48", "--steps", "3", "--random-n", "8", "--random-samples", "40",
            "--eot-ks", "1,2", "--steps-values", "2,4", "--unbounded-steps", "10", "--score-n", "4",
            "--score-queries", "300", "--quiet"]


def test_cli_audit_writes_json_markdown_and_figures(pni_run, plain_lenet, tmp_path, capsys):
    from pni.checkpoint import atomic_save
    from pni.models import model_meta

    source = tmp_path / "surrogate.pt"
    atomic_save({"format": "pni-checkpoint", "model": plain_lenet.state_dict(),
                 "model_meta": model_meta(plain_lenet)}, source)
    code = cli.main(["audit", str(pni_run / "checkpoint.pt"), *CLI_FAST, "--surrogate", str(source)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    folder = pni_run / "audit"
    saved = json.loads((folder / "audit.json").read_text())
    assert saved["settings"]["eps"] == pytest.approx(EPS)  # the checkpoint's training eps
    assert saved["n"] == 48 and saved["randomized"] is True
    assert [i["number"] for i in saved["items"]] == list(range(1, 8))
    assert saved["items"][1]["evidence"]["surrogate"] == "given"
    assert "Verdict:" in captured.out and "| 7 | EOT samples |" in captured.out
    assert (folder / "fig3.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_audit_items_and_no_surrogate(pni_run, tmp_path, capsys):
    code = cli.main(["audit", str(pni_run / "checkpoint.pt"), *CLI_FAST, "--items", "2,3",
                     "--no-surrogate", "--eps", "8/255", "--out", str(tmp_path / "a")])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert [i["number"] for i in saved["items"]] == [2, 3]
    item2 = saved["items"][0]["evidence"]
    assert "no surrogate" in item2["surrogate"] and list(item2["black_box_accuracy"]) == ["zoo"]
    assert item2["black_box_attacks"]["zoo"]["images"] == 4
    assert saved["settings"]["eps"] == pytest.approx(8 / 255)
    assert not (tmp_path / "a" / "fig3.png").exists()


@pytest.mark.parametrize("flags, match", [
    (["--items", "1,9"], "--items"),
    (["--num-images", "0"], "--num-images"),
    (["--eot-ks", "3"], "--eot-ks"),
    (["--steps", "0"], "--steps"),
    (["--eps", "2"], "--eps"),
])
def test_cli_audit_rejects_bad_values(pni_run, tmp_path, capsys, flags, match):
    code = cli.main(["audit", str(pni_run / "checkpoint.pt"), "--out", str(tmp_path / "x"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pni audit: error:") and match in err


def test_cli_audit_of_a_missing_checkpoint_names_the_file(tmp_path, capsys):
    code = cli.main(["audit", str(tmp_path / "nope.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.pt" in err


def test_cli_report_gathers_log_evaluation_and_audit(pni_run, tmp_path, capsys):
    if not (pni_run / "audit" / "audit.json").exists():
        assert cli.main(["audit", str(pni_run / "checkpoint.pt"), *CLI_FAST, "--no-surrogate"]) == 0
    assert cli.main(["eval", str(pni_run / "checkpoint.pt"), "--num-images", "32", "--trials", "2",
                     "--steps", "2", "--attacks", "clean,pgd,fgsm"]) == 0
    capsys.readouterr()
    out = tmp_path / "report"
    code = cli.main(["report", str(pni_run), "--out", str(out), "--title", "My runs"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = (out / "report.md").read_text()
    assert text.startswith("# My runs")
    for heading in ("Table 1", "Fig. 2", "Table 2", "Table 7", "Fig. 3", "EOT"):
        assert heading in text
    assert "| Conv0 |" in text and "![" in text
    for name in ("fig2_pni-w.png", "fig3.png", "eot.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    code = cli.main(["report", str(tmp_path / "missing"), "--out", str(out)])
    assert code == 2 and "missing" in capsys.readouterr().err
