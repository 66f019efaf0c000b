"""The attack suite of issue 4: C&W-L2, ZOO, transfer, EOT, votes, AutoAttack, worst case.

Small LeNet-5 models trained for a few seconds on the packaged MNIST sample: an undefended
one, a PGD-trained one and a PGD-trained PNI-W one (module-scoped fixtures).
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pni
from pni.cli import app as cli
from pni.attacks import (
    AttackError,
    CW_PROFILES,
    autoattack,
    cw_l2,
    cw_l2_profile,
    expected_accuracy,
    input_gradient,
    majority_vote,
    majority_vote_accuracy,
    pgd,
    predict_votes,
    transfer,
    vote_correctness,
    zoo,
)
from pni.attacks.registry import build_attacks
from pni.attacks.transfer import transfer_matrix
from pni.evaluation.evaluator import evaluate
from pni.reports import write_evaluation

EPS = 0.2


def _train(location: str | None, adversarial: bool, epochs: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    x, y = pni.load_dataset("mnist-sample", "train").tensors()
    model = pni.create_model("lenet5")
    if location:
        pni.inject(model, location)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 64):
            idx = order[start:start + 64]
            xb, yb = x[idx], y[idx]
            if adversarial:
                model.eval()
                xb = pgd(model, xb, yb, EPS, EPS / 4, 5)
                model.train()
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def plain_model() -> nn.Module:
    return _train(None, adversarial=False)


@pytest.fixture(scope="module")
def robust_model() -> nn.Module:
    return _train(None, adversarial=True, epochs=1)


@pytest.fixture(scope="module")
def pni_model() -> nn.Module:
    return _train("W", adversarial=True, epochs=1)


@pytest.fixture(scope="module")
def test_data() -> tuple[torch.Tensor, torch.Tensor]:
    return pni.load_dataset("mnist-sample", "test").subset(128).tensors()


# --- EOT ---------------------------------------------------------------------------------

def test_eot_with_one_draw_is_plain_pgd_under_the_same_seed(pni_model, test_data):
    x, y = test_data[0][:32], test_data[1][:32]
    torch.manual_seed(5)
    plain = pgd(pni_model, x, y, EPS, 0.05, 4)
    table, params = build_attacks(["eot-pgd"], eps=EPS, steps=4, step_size=0.05, eot=1)
    torch.manual_seed(5)
    eot_one = table["eot-pgd"](pni_model, x, y)
    assert params["eot-pgd"]["eot"] == 1
    assert torch.equal(plain, eot_one)


@pytest.mark.parametrize("noise_off", [True, False])
def test_on_a_model_without_noise_eot_pgd_is_pgd(plain_model, pni_model, test_data, noise_off):
    model = pni_model if noise_off else plain_model
    x, y = test_data[0][:32], test_data[1][:32]
    with pni.noise_enabled(model, False):
        torch.manual_seed(1)
        plain = pgd(model, x, y, EPS, 0.05, 4)
        torch.manual_seed(1)
        eot = pgd(model, x, y, EPS, 0.05, 4, eot=20)
        torch.manual_seed(1)
        eot_vectorized = pgd(model, x, y, EPS, 0.05, 4, eot=20, eot_batch=5)
    assert torch.equal(plain, eot) and torch.equal(plain, eot_vectorized)
    assert all(m.enabled for m in pni.noise_modules(model).values())


def test_vectorized_draws_are_independent_and_share_a_weight_draw_within_a_draw():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W").eval()
    x = torch.rand(4, 1, 28, 28)
    x = torch.cat([x, x[:1]])                       # image 0 twice in the batch
    y = torch.randint(0, 10, (5,))
    y[4] = y[0]
    single = torch.stack([input_gradient(model, x, y, eot=1)[0] for _ in range(24)])
    batched = torch.stack([input_gradient(model, x, y, eot=8, eot_batch=8)[0] for _ in range(24)])
    looped = torch.stack([input_gradient(model, x, y, eot=8, eot_batch=1)[0] for _ in range(24)])
    # k independent draws: the spread of the average shrinks like 1/k (k = 8 -> variance / 8);
    # k copies of one draw would not shrink it at all
    ratio = batched.var(0).mean() / single.var(0).mean()
    assert ratio < 0.25
    assert batched.var(0).mean() / looped.var(0).mean() == pytest.approx(1.0, abs=0.5)
    # same expectation as the plain loop
    cos = F.cosine_similarity(batched.mean(0).flatten(), looped.mean(0).flatten(), dim=0)
    assert cos > 0.9
    # within one draw the weight noise is shared by the batch, as in a plain forward
    assert torch.allclose(batched[:, 0], batched[:, 4], atol=1e-6)
    assert not torch.allclose(batched[0], batched[1])


def test_eot_pgd_is_not_weaker_than_pgd_on_a_pni_model(pni_model, test_data):
    x, y = test_data
    torch.manual_seed(0)
    plain = expected_accuracy(predict_votes(pni_model, pgd(pni_model, x, y, EPS, 0.05, 8), 10), y)
    torch.manual_seed(0)
    eot = expected_accuracy(predict_votes(pni_model, pgd(pni_model, x, y, EPS, 0.05, 8, eot=8), 10), y)
    assert eot <= plain + 0.03


# --- votes -------------------------------------------------------------------------------

def test_votes_expected_and_majority_accuracy():
    preds = torch.tensor([[0, 1, 2, 3], [0, 1, 1, 2], [1, 2, 1, 2]])
    y = torch.tensor([0, 1, 1, 3])
    assert majority_vote(preds).tolist() == [0, 1, 1, 2]
    assert majority_vote(torch.tensor([[2], [1]])).tolist() == [1]          # tie: lowest class
    assert expected_accuracy(preds, y) == pytest.approx(7 / 12)
    assert majority_vote_accuracy(preds, y) == pytest.approx(3 / 4)
    fraction, majority = vote_correctness(preds, y)
    assert fraction.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1 / 3])
    assert majority.tolist() == [True, True, True, False]


def test_predict_votes_draws_noise_and_repeats_a_deterministic_model(pni_model, test_data):
    x = test_data[0][:64]
    preds = predict_votes(pni_model, x, votes=7, batch_size=32)
    assert preds.shape == (7, 64)
    assert not all(torch.equal(preds[0], row) for row in preds[1:])
    with pni.noise_enabled(pni_model, False):
        fixed = predict_votes(pni_model, x, votes=5)
    assert all(torch.equal(fixed[0], row) for row in fixed)
    with pytest.raises(AttackError, match="votes"):
        predict_votes(pni_model, x, votes=0)


# --- C&W-L2 ------------------------------------------------------------------------------

# The strong profile is 1,000 Adam steps at lr 0.01 (about 75 s for both models here);
# the fast test runs it with lr 0.1, 100 steps, 6 binary-search steps.
FAST_STRONG = {"lr": 0.1, "steps": 100, "binary_search_steps": 6}


def _check_cw(result, x):
    l2 = (result.x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(result.l2, l2, atol=1e-6)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    # x itself where the search found nothing; a success is always something the search found
    assert torch.equal(result.x_adv[~result.found], x[~result.found])
    assert not (result.success & ~result.found).any()


def test_cw_strong_profile_fools_an_undefended_model_with_smaller_l2_than_a_robust_one(
        plain_model, robust_model, test_data):
    x, y = test_data[0][:48], test_data[1][:48]
    torch.manual_seed(0)
    plain = cw_l2_profile(plain_model, x, y, "strong", **FAST_STRONG)
    robust = cw_l2_profile(robust_model, x, y, "strong", **FAST_STRONG)
    assert plain.success_rate >= 0.97
    assert robust.success_rate >= 0.9
    assert plain.mean_l2 < robust.mean_l2            # Table 4's direction
    _check_cw(plain, x)
    _check_cw(robust, x)
    assert plain.params["lr"] == 0.1 and plain.params["binary_search_steps"] == 6


@pytest.mark.slow
def test_cw_full_strong_profile(plain_model, robust_model, test_data):
    x, y = test_data[0][:64], test_data[1][:64]
    plain = cw_l2_profile(plain_model, x, y, "strong")
    robust = cw_l2_profile(robust_model, x, y, "strong")
    assert plain.success_rate == 1.0 and robust.success_rate >= 0.97
    assert plain.mean_l2 < robust.mean_l2
    _check_cw(plain, x)


def test_cw_paper_profile_is_the_papers_setting_and_barely_moves(plain_model, test_data):
    assert CW_PROFILES["paper"] == {"c": 0.01, "lr": 5e-4, "steps": 10, "binary_search_steps": 9,
                                    "confidence": 0.0}
    x, y = test_data[0][:32], test_data[1][:32]
    paper = cw_l2(plain_model, x, y)
    _check_cw(paper, x)
    assert paper.success_rate < 0.5
    strong = cw_l2_profile(plain_model, x, y, "strong", **FAST_STRONG)
    assert strong.success_rate > paper.success_rate


def test_cw_with_eot_on_a_pni_model_leaves_the_model_as_it_was(pni_model, test_data):
    x, y = test_data[0][:16], test_data[1][:16]
    pni_model.train()
    try:
        result = cw_l2(pni_model, x, y, lr=0.1, steps=20, binary_search_steps=2, eot=4)
    finally:
        assert pni_model.training
        pni_model.eval()
    _check_cw(result, x)
    assert all(p.grad is None and p.requires_grad for p in pni_model.parameters())
    assert result.params["eot"] == 4


# --- ZOO ---------------------------------------------------------------------------------

def test_zoo_fools_an_undefended_model_without_any_backward(plain_model, test_data, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("ZOO called backward")

    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    grad_modes = []
    handle = plain_model.register_forward_hook(lambda m, i, o: grad_modes.append(torch.is_grad_enabled()))
    try:
        x, y = test_data[0][:24], test_data[1][:24]
        torch.manual_seed(0)
        result = zoo(plain_model, x, y, steps=150, lr=0.1, batch_size=24)
    finally:
        handle.remove()
    assert grad_modes and not any(grad_modes)
    assert result.success_rate >= 0.9
    assert not result.x_adv.requires_grad
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert torch.allclose(result.l2, (result.x_adv - x).flatten(1).norm(dim=1), atol=1e-5)
    assert (result.queries[result.initially_correct] > 1).all()
    fooled = plain_model(result.x_adv).argmax(1) != y
    assert torch.equal(fooled[result.initially_correct], result.success[result.initially_correct])


def test_zoo_with_eps_stays_in_the_linf_ball(plain_model, test_data):
    x, y = test_data[0][:8], test_data[1][:8]
    result = zoo(plain_model, x, y, steps=10, coords=32, lr=0.1, eps=0.05, early_stop=False)
    assert (result.x_adv - x).abs().max() <= 0.05 + 1e-6
    with pytest.raises(AttackError, match="coords"):
        zoo(plain_model, x, y, coords=0)


# --- transfer ----------------------------------------------------------------------------

@pytest.mark.parametrize("noise", [True, False])
def test_transfer_from_a_model_to_itself_is_the_white_box_attack(pni_model, test_data, noise):
    x, y = test_data[0][:96], test_data[1][:96]
    with pni.noise_enabled(pni_model, noise):
        own = transfer(pni_model, pni_model, x, y, "pgd", eps=EPS, steps=4, step_size=0.05, seed=3,
                       batch_size=64)
    white = evaluate(pni_model, (x, y), ["pgd"], trials=1, noise=noise, eps=EPS, steps=4,
                     step_size=0.05, seed=3, batch_size=64)
    setting = "with_noise" if noise else "without_noise"
    assert own.accuracy == white.accuracies[setting]["pgd"][0]
    assert torch.equal(own.correct.cpu(), white.correct[setting]["pgd"][0])


def test_transfer_matrix_diagonal_is_white_box_and_off_diagonal_transfers(plain_model, robust_model, test_data):
    x, y = test_data[0][:64], test_data[1][:64]
    matrix = transfer_matrix({"A": plain_model, "B": robust_model}, x, y, "pgd", trials=2, eps=EPS,
                             steps=5, step_size=0.05)
    acc = matrix.summary()
    # examples made on the undefended model hurt it most; the robust one resists them better
    assert acc["A"]["A"]["mean"] < acc["A"]["B"]["mean"]
    assert acc["B"]["B"]["mean"] < acc["B"]["A"]["mean"]
    white = evaluate(robust_model, (x, y), ["pgd"], trials=2, eps=EPS, steps=5, step_size=0.05)
    assert matrix.accuracy["B"]["B"] == white.accuracies["without_noise"]["pgd"]


# --- AutoAttack --------------------------------------------------------------------------

def test_autoattack_rand_via_pyautoattack_is_not_weaker_than_pgd(pni_model, test_data, capsys):
    x, y = test_data[0][:64], test_data[1][:64]
    torch.manual_seed(0)
    result = autoattack(pni_model, x, y, EPS, "rand", n_iter=20, eot_iter=4, votes=10)
    assert capsys.readouterr().out == ""                     # pyautoattack kept quiet
    assert result.params["attacks"] == "apgd-ce,apgd-dlr" and result.params["eot_iter"] == 4
    assert (result.x_adv - x).abs().max() <= EPS + 1e-5
    torch.manual_seed(0)
    ours = expected_accuracy(predict_votes(pni_model, pgd(pni_model, x, y, EPS, 0.05, 20), 10), y)
    assert result.robust_accuracy <= ours + 0.05
    assert result.fraction.shape == (64,) and result.reported_correct.dtype == torch.bool


def test_autoattack_standard_on_a_deterministic_model(robust_model, test_data):
    x, y = test_data[0][:24], test_data[1][:24]
    torch.manual_seed(0)
    result = autoattack(robust_model, x, y, EPS, "standard", n_iter=10, votes=3)
    # no noise: pyautoattack's one-pass flags and pni's recomputation agree
    assert torch.equal(result.reported_correct, result.correct)
    torch.manual_seed(0)
    ours = float((robust_model(pgd(robust_model, x, y, EPS, 0.05, 20)).argmax(1) == y).float().mean())
    assert result.robust_accuracy <= ours + 1 / 24
    with pytest.raises(AttackError, match="version"):
        autoattack(robust_model, x, y, EPS, "plus")


# --- the suite in evaluate and pni eval --------------------------------------------------

def test_evaluate_with_votes_worst_case_and_attack_figures(pni_model, test_data, tmp_path):
    x, y = test_data[0][:16], test_data[1][:16]
    options = {"eot": 3, "cw": {"steps": 5, "binary_search_steps": 2}, "zoo": {"steps": 5, "coords": 16},
               "aa": {"n_iter": 3, "eot_iter": 2}}
    ev = evaluate(pni_model, (x, y), ["clean", "pgd", "eot-pgd", "cw", "zoo", "aa-rand"], trials=2,
                  eps=EPS, steps=3, step_size=0.1, votes=5, attack_options=options)
    for setting in ("with_noise", "without_noise"):
        worst = ev.fractions[setting]["worst-case"]
        over = [n for n in ev.fractions[setting] if n not in ("cw", "worst-case")]
        assert torch.equal(worst, torch.stack([ev.fractions[setting][n] for n in over]).amin(0))
        for name in over:
            assert all(w <= a for w, a in zip(ev.accuracies[setting]["worst-case"], ev.accuracies[setting][name]))
        assert torch.equal(ev.correct[setting]["worst-case"],
                           torch.stack([ev.correct[setting][n] for n in over]).all(0))
    assert "cw" not in ev.attacks["worst-case"]["over"]
    assert ev.attacks["eot-pgd"]["eot"] == 3 and ev.attacks["cw"]["steps"] == 5
    metrics = ev.attack_metrics()["with_noise"]
    assert {"success_rate", "mean_l2"} <= set(metrics["cw"]) and "success_rate" in metrics["zoo"]
    assert "reported_accuracy" in metrics["aa-rand"]
    # expected accuracy = mean over draws; without noise the draws agree
    frac = ev.fractions["with_noise"]["clean"]
    assert ev.accuracies["with_noise"]["clean"] == pytest.approx(frac.mean(1).tolist())
    assert set(ev.fractions["without_noise"]["clean"].unique().tolist()) <= {0.0, 1.0}
    paths = write_evaluation(ev, tmp_path, "PNI-W")
    text = paths["markdown"].read_text()
    for piece in ("Worst case", "Majority vote over 5", "Mean L2 of successes", "profile=paper", "eot=3"):
        assert piece in text
    data = json.loads(paths["json"].read_text())
    assert data["votes"] == 5 and "worst-case" in data["accuracy_percent"]["with_noise"]
    assert "attack_metrics" in data and "majority_vote_accuracy_percent" in data


def test_one_vote_worst_case_is_correct_under_every_attack(pni_model, test_data):
    x, y = test_data[0][:32], test_data[1][:32]
    ev = evaluate(pni_model, (x, y), ["clean", "pgd", "fgsm"], trials=2, eps=EPS, steps=2)
    for setting, per_attack in ev.correct.items():
        expected = per_attack["clean"] & per_attack["pgd"] & per_attack["fgsm"]
        assert torch.equal(per_attack["worst-case"], expected)
    none = evaluate(pni_model, (x, y), ["clean", "pgd"], trials=1, eps=EPS, steps=2, worst_case=False)
    assert "worst-case" not in none.accuracies["with_noise"] and "worst-case" not in none.attacks


def test_unknown_attack_option_and_bad_votes_are_clear_errors(pni_model, test_data):
    with pytest.raises(AttackError, match="unknown attack option.*eot_steps"):
        build_attacks(["pgd"], eot_steps=3)
    with pytest.raises(AttackError, match="C&W profile 'fast'"):
        build_attacks(["cw"], cw_profile="fast")
    with pytest.raises(pni.EvaluationError, match="votes"):
        evaluate(pni_model, test_data, ["clean"], trials=1, votes=0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for name, location in (("a", "none"), ("b", "W")):
        out = root / name
        assert cli.main(["train", "--preset", "mnist-lenet", "--scale", "smoke", "--train-subset", "256",
                         "--eval-subset", "0", "--steps", "2", "--location", location,
                         "--progress", "false", "--out", str(out)]) == 0
        paths.append(out / "checkpoint.pt")
    return paths


def test_cli_eval_runs_the_honest_suite_by_default_and_the_paper_protocol_on_request(
        checkpoints, tmp_path, capsys):
    ckpt = str(checkpoints[1])
    assert cli.main(["eval", ckpt, "--num-images", "16", "--trials", "2", "--steps", "2", "--eot", "2",
                     "--votes", "3", "--aa-iterations", "2", "--out", str(tmp_path / "honest")]) == 0
    honest = json.loads((tmp_path / "honest" / "results.json").read_text())
    assert list(honest["attacks"]) == ["clean", "pgd", "fgsm", "eot-pgd", "aa-rand", "worst-case"]
    assert honest["votes"] == 3 and honest["attacks"]["eot-pgd"]["eot"] == 2
    assert "worst-case" in honest["accuracy_percent"]["with_noise"]
    assert cli.main(["eval", ckpt, "--num-images", "16", "--trials", "2", "--steps", "2", "--protocol", "paper",
                     "--out", str(tmp_path / "paper")]) == 0
    paper = json.loads((tmp_path / "paper" / "results.json").read_text())
    assert list(paper["attacks"]) == ["clean", "pgd", "fgsm"] and paper["votes"] == 1
    out = capsys.readouterr().out
    assert "Worst case" in out


def test_cli_transfer_prints_the_a_to_b_matrix(checkpoints, tmp_path, capsys):
    code = cli.main(["transfer", str(checkpoints[0]), str(checkpoints[1]), "--num-images", "16", "--trials", "2",
                     "--steps", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "A ⇒ B" in out and "B ⇒ A" in out and "| Source \\ Target | A | B |" in out
    data = json.loads((tmp_path / "transfer.json").read_text())
    assert set(data["accuracy_per_trial"]) == {"A", "B"} and len(data["accuracy_per_trial"]["A"]["B"]) == 2
    code = cli.main(["transfer", str(checkpoints[0]), str(tmp_path / "missing.pt")])
    assert code == 2 and "missing.pt" in capsys.readouterr().err
