"""Randomized smoothing (Cohen et al. 2019): CERTIFY and PREDICT against the closed form of a
linear classifier, the statistics (alpha, abstain, binomial test), noisy models, outputs, the
CLI module, the training building blocks and the certificate-vs-attack cross-check."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("scipy")
from scipy.stats import beta, binom, binomtest, chi2, norm  # noqa: E402

import pni  # noqa: E402
from pni.certification.smoothing import (
    ABSTAIN,
    CertifyError,
    certified_radius,
    certify,
    gaussian_augment,
    lower_confidence_bound,
    predict,
    rse_inject,
    sample_counts,
)
from pni.certification.check import cross_check_certificates
from pni.models import Normalize  # noqa: E402
from pni.reports.certify import certificate_check_markdown, write_certification  # noqa: E402


class LinearTwoClass(nn.Module):
    """logits = W normalize(x) + b on flattened 1x4x4 images. In pixel space the decision is
    ``w.x + b`` (w = the difference of the rows over the std), so under Gaussian noise
    ``g = f`` and the exact L2 radius is ``|w.x + b| / ||w||`` (Cohen et al., Sec. 3)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.normalize = Normalize((0.5,), (0.25,))
        self.fc = nn.Linear(16, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(2, 16, generator=gen))
            self.fc.bias.copy_(torch.randn(2, generator=gen))
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        return self.fc(self.normalize(x).flatten(1))

    def decision(self) -> tuple[torch.Tensor, float]:
        weight, bias = self.fc.weight.detach(), self.fc.bias.detach()
        w = (weight[1] - weight[0]) / 0.25
        b = float(bias[1] - bias[0]) - float(w.sum()) * 0.5  # z = (x - 0.5) / 0.25
        return w, b

    def images_at(self, distances: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images at signed L2 distances from the decision boundary (positive: class 1)."""
        w, b = self.decision()
        unit = w / w.norm()
        center = torch.full((16,), 0.5)
        offset = (center @ w + b) / w.norm()
        x = torch.stack([center + (d - offset) * unit for d in distances]).view(-1, 1, 4, 4)
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        return x, (torch.tensor(distances) > 0).long()


def exact_radius(model: LinearTwoClass, x: torch.Tensor) -> torch.Tensor:
    w, b = model.decision()
    return ((x.flatten(1) @ w + b).abs() / w.norm()).double()


# --- the closed form --------------------------------------------------------------------

def test_certificate_matches_the_linear_closed_form_within_monte_carlo_error():
    model = LinearTwoClass()
    distances = [0.1, 0.2, 0.3, 0.4, -0.15, -0.25, -0.35]
    x, y = model.images_at(distances)
    sigma, n, alpha = 0.25, 10_000, 0.001
    result = certify(model, (x, y), sigma, n0=100, n=n, alpha=alpha, seed=0)
    exact = exact_radius(model, x)
    assert torch.allclose(exact, torch.tensor(distances).abs().double(), atol=1e-5)
    assert torch.equal(result.predictions, y)
    p = norm.cdf(exact.numpy() / sigma)
    slack = (norm.ppf(1 - alpha) + 4) * np.sqrt(p * (1 - p) / n)  # the bound's offset + 4 std
    lowest = sigma * norm.ppf(p - slack)
    assert (result.radii.numpy() <= exact.numpy()).all()
    assert (result.radii.numpy() >= lowest).all()
    assert result.certified_accuracy(0.0) == 1.0
    assert predict(model, x, sigma, n=2000, alpha=alpha).classes.tolist() == y.tolist()


def _failures(model: LinearTwoClass, distances: list[float], alpha: float, seed: int) -> tuple[int, int]:
    x, y = model.images_at(distances)
    result = certify(model, (x, y), 0.25, n0=20, n=500, alpha=alpha, batch_size=4000, seed=seed)
    answered = result.predictions != ABSTAIN
    wrong = answered & ((result.predictions != y) | (result.radii > exact_radius(model, x)))
    return int(wrong.sum()), len(y)


@pytest.mark.parametrize("seed", [0, 1])
def test_certificate_exceeds_the_exact_radius_in_at_most_alpha_of_repeats(seed):
    # 600 independent certifications at alpha = 0.1; H0 (failure rate <= alpha) is rejected
    # only beyond the 1e-4 upper quantile of Binomial(600, 0.1). Clopper-Pearson is
    # conservative, yet not vacuous: some certificates do exceed the exact radius.
    model = LinearTwoClass()
    alpha = 0.1
    failures, total = _failures(model, [0.05, 0.1, 0.2, -0.05, -0.1, -0.2] * 100, alpha, seed)
    assert 0 < failures <= binom.ppf(1 - 1e-4, total, alpha)


def test_abstains_when_the_top_class_is_not_significant():
    model = LinearTwoClass()
    x, y = model.images_at([0.001, -0.001, 1e-6])  # p_A = Phi(0.004) ~ 0.5016
    result = certify(model, (x, y), 0.25, n0=100, n=10_000, alpha=0.001)
    assert result.predictions.tolist() == [ABSTAIN] * 3
    assert result.radii.tolist() == [0.0] * 3
    assert result.abstain_rate == 1.0 and result.certified_accuracy(0.0) == 0.0


def test_radius_grows_with_n_and_alpha_is_respected():
    sigma = 0.5
    bounds = [float(lower_confidence_bound(int(0.8 * n), n, 0.001)) for n in (100, 1000, 10_000, 100_000)]
    assert bounds == sorted(bounds) and bounds[-1] < 0.8
    radii = certified_radius(np.array(bounds), sigma)
    assert (np.diff(radii) > 0).all()
    assert float(lower_confidence_bound(800, 1000, 0.001)) < float(lower_confidence_bound(800, 1000, 0.05))
    # the Clopper-Pearson identities: alpha quantile of Beta(k, n - k + 1); k = n gives alpha^(1/n)
    assert math.isclose(float(lower_confidence_bound(37, 50, 0.01)), beta.ppf(0.01, 37, 14))
    assert math.isclose(float(lower_confidence_bound(50, 50, 0.01)), 0.01 ** (1 / 50))
    assert float(lower_confidence_bound(0, 50, 0.01)) == 0.0
    # end to end: the same image, more samples -> a larger certificate
    model = LinearTwoClass()
    x, y = model.images_at([0.2])
    small, large = (certify(model, (x, y), 0.25, n=n, batch_size=10_000).radii.item() for n in (200, 50_000))
    assert 0 < small < large <= 0.2


class FixedVotes(nn.Module):
    """Deterministic: the first ``share`` of the rows of every batch are class 0, the rest class 1."""

    def __init__(self, share: float) -> None:
        super().__init__()
        self.share = share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = round(self.share * len(x))
        logits = torch.zeros(len(x), 3)
        logits[:k, 0] = 1.0
        logits[k:, 1] = 1.0
        return logits


@pytest.mark.parametrize("share, alpha, expected", [
    (0.60, 0.05, ABSTAIN),  # binomtest(60, 100) p = 0.057
    (0.60, 0.10, 0),
    (0.40, 0.10, 1),
    (0.50, 0.50, ABSTAIN),  # a tie: p = 1
    (0.70, 0.001, 0),       # p = 7.9e-5
])
def test_predict_returns_or_abstains_as_the_binomial_test_says(share, alpha, expected):
    x = torch.rand(3, 1, 4, 4)
    out = predict(FixedVotes(share), x, 0.1, n=100, alpha=alpha, batch_size=100)
    k = round(100 * share)
    assert out.counts[:, :2].tolist() == [[k, 100 - k]] * 3
    p = binomtest(max(k, 100 - k), 100, 0.5).pvalue
    assert torch.allclose(out.p_values, torch.full((3,), p, dtype=torch.float64))
    assert out.classes.tolist() == [expected] * 3


# --- randomized models, modes, seeds ------------------------------------------------------

def test_pni_noise_is_drawn_afresh_for_every_sample_of_a_batch():
    # On the clean decision boundary only the weight noise decides. PNI-W draws one weight
    # noise per forward call: shared by a batch, the 400 samples of one pass would all agree.
    model = LinearTwoClass()
    x, y = model.images_at([0.0])
    pni.inject(model, "W", init_alpha=2.0)
    result = certify(model, (x, y), 1e-4, n0=400, n=400, batch_size=400)
    assert 0.25 * 400 < int(result.top_counts[0]) < 0.75 * 400
    with torch.no_grad():  # one plain pass: one weight draw, one class for the whole batch
        assert model(x.expand(400, -1, -1, -1)).argmax(1).unique().numel() == 1


def test_a_noisy_lenet_certifies_in_eval_mode_and_restores_mode_and_random_state():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W+A-a").train()
    data = pni.load_dataset("mnist-sample", "test").subset(6)
    state = torch.get_rng_state()
    first = certify(model, data, 0.25, n0=10, n=60, batch_size=128, seed=3)
    assert model.training and torch.equal(torch.get_rng_state(), state)
    again = certify(model, data, 0.25, n0=10, n=60, batch_size=128, seed=3)
    other = certify(model, data, 0.25, n0=10, n=60, batch_size=128, seed=4)
    assert torch.equal(first.top_counts, again.top_counts) and torch.equal(first.radii, again.radii)
    assert not torch.equal(first.top_counts, other.top_counts)
    assert first.subset is not None and first.subset["n"] == 6
    assert ((first.predictions >= ABSTAIN) & (first.predictions < 10)).all()
    assert (first.radii[first.predictions == ABSTAIN] == 0).all()


class WeightCoin(nn.Module):
    """Image i (1 x 1 x K, a one at pixel i, rounded back after the Gaussian noise) is class 1
    with probability ``p``, decided by its own column of the PNI weight noise alone:
    ``logit_1 - logit_0 = -2 + (eta_1i - eta_0i) + b`` (weight rows +1 / -1, std 1, alpha 1),
    so ``P(class 1) = Phi((b - 2) / sqrt(2))``. ``draws`` records the images every weight draw served."""

    def __init__(self, images: int, p: float) -> None:
        super().__init__()
        self.fc = nn.Linear(images, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]).expand(2, images))
            self.fc.bias.copy_(torch.tensor([0.0, 2 + math.sqrt(2) * norm.ppf(p)]))
        pni.inject(self, "W", init_alpha=1.0)
        self.draws: list[list[int]] = []
        self.current: list[int] = []
        pni.noise_modules(self)["fc:W"].register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if module.enabled:
            self.draws.append(self.current)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        onehot = x.flatten(1).round()
        self.current = onehot.argmax(1).tolist()
        return self.fc(onehot)

    @staticmethod
    def images(k: int) -> torch.Tensor:
        return torch.eye(k).view(k, 1, 1, k)


def _dispersion(counts: torch.Tensor, n: int, p: float) -> float:
    """Sum of squared deviations over the Binomial(n, p) variance: ~ chi2(len(counts)) for
    independent Binomial(n, p) counts, about n times larger if samples of an image agree."""
    c = counts.double()
    return float(((c - n * p) ** 2).sum() / (n * p * (1 - p)))


@pytest.mark.parametrize("images, batch_size, seed", [(300, 128, 0), (300, 128, 1), (60, 1000, 0)])
def test_weight_noise_samples_of_one_image_come_from_distinct_draws(images, batch_size, seed):
    # Weight noise is one draw per pass: certify puts sample j of many images in pass j, never
    # two samples of one image (300 images: passes of 128 rows; 60 images: passes of 60).
    n, p = 40, 0.3
    model = WeightCoin(images, p)
    counts = sample_counts(model, WeightCoin.images(images), 0.01, n, batch_size, seed)[:, 1]
    assert len(model.draws) == n * images // min(batch_size, images) + (n * images % min(batch_size, images) > 0)
    assert all(len(set(draw)) == len(draw) for draw in model.draws)  # no image twice in a draw
    served = torch.bincount(torch.tensor([i for draw in model.draws for i in draw]), minlength=images)
    assert served.tolist() == [n] * images  # so each image's n samples saw n distinct draws
    # its counts are independent Binomial(n, p): mean and dispersion at the 1e-4 tails
    assert abs(float(counts.double().mean()) - n * p) < 4.5 * math.sqrt(n * p * (1 - p) / images)
    assert chi2.ppf(1e-4, images) < _dispersion(counts, n, p) < chi2.ppf(1 - 1e-4, images)


def test_the_dispersion_check_sees_samples_that_share_a_weight_draw():
    # the scheme certify must not use: plain passes of consecutive samples of each image
    n, p, images = 40, 0.3, 300
    model = WeightCoin(images, p)
    x = WeightCoin.images(images).repeat_interleave(n, 0)
    torch.manual_seed(0)
    with torch.no_grad():
        votes = torch.cat([model(batch).argmax(1) for batch in x.split(128)])
    counts = votes.view(images, n).sum(1)
    assert _dispersion(counts, n, p) > 10 * chi2.ppf(1 - 1e-4, images)


def test_activation_noise_rows_do_not_depend_on_the_other_rows():
    # Inside certify, A-a / A-b / I noise is scaled by each row's std: a row is the model on a
    # batch of one, whatever shares its batch. A plain batch scales by the whole batch's std.
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "A-a").eval()
    x = torch.rand(2, 1, 28, 28)
    other = torch.stack([x[0], 5 * x[1]])

    def first_row(batch: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)
        with torch.no_grad():
            return model(batch)[0]

    assert not torch.allclose(first_row(x), first_row(other))
    alone = first_row(x[:1])
    with pni.noise.per_sample_std(model):
        assert torch.allclose(first_row(x), first_row(other), atol=1e-6)
        assert torch.allclose(first_row(x[:1]), alone, atol=1e-6)  # a batch of one: the same model
    assert all(not m.per_sample for m in pni.noise_modules(model).values())


class SharedCoin(nn.Module):
    """Randomness pni cannot see: one uniform draw per call decides the class of the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.rand(())
        return torch.stack([u, 1 - u]).expand(len(x), 2) + 0 * x.flatten(1)[:, :1]


@pytest.mark.parametrize("location, scheme", [
    (None, "fixed"), ("A-a", "rows"), ("A-b", "rows"), ("I", "rows"),
    ("W", "passes"), ("W+A-a", "passes"), ("W+A-b", "passes"), ("coin", "sample"),
])
def test_each_model_gets_its_sampling_scheme(location, scheme):
    from pni.certification.sampling import sampling

    model = SharedCoin() if location == "coin" else pni.create_model("lenet5")
    if location not in (None, "coin"):
        pni.inject(model, location)
    x = torch.rand(3, 1, 28, 28)
    with sampling(model, x, seed=0) as (sampler, _):
        assert sampler.scheme == scheme
    if location == "coin":  # a fresh coin per sample (vmap), not per pass
        top = int(sample_counts(model, x[:2], 0.1, 400, batch_size=400).max())
        assert top < 0.75 * 400


def test_certification_runs_the_model_in_eval_mode():
    model = LinearTwoClass().train()
    x, y = model.images_at([0.2])
    certify(model, (x, y), 0.25, n0=10, n=20)
    assert model.seen_training and not any(model.seen_training) and model.training


@pytest.mark.parametrize("kwargs, match", [
    ({"sigma": 0.0}, "sigma"), ({"sigma": -0.25}, "sigma"), ({"sigma": float("nan")}, "sigma"),
    ({"sigma": float("inf")}, "sigma"), ({"sigma": True}, "sigma"),
    ({"n0": 200, "n": 100}, "n0"), ({"n": 0}, "n must"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments_are_one_line_errors(kwargs, match):
    model = LinearTwoClass()
    x, y = model.images_at([0.2])
    args = {"sigma": 0.25, **kwargs}
    with pytest.raises(CertifyError, match=match) as info:
        certify(model, (x, y), **args)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_empty_data_is_a_clear_error():
    with pytest.raises(CertifyError, match="empty"):
        certify(LinearTwoClass(), (torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long)), 0.25)


# --- outputs and the command ---------------------------------------------------------------

def test_json_markdown_and_png_are_written(tmp_path):
    model = LinearTwoClass()
    x, y = model.images_at([0.1, 0.3, -0.6, 0.001])
    result = certify(model, (x, y), 0.25, n0=50, n=2000)
    paths = write_certification(result, tmp_path / "out", "linear")
    saved = json.loads(paths["json"].read_text())
    assert saved["model"] == "linear" and saved["n"] == 2000 and saved["sigma"] == 0.25
    assert set(saved["certified_accuracy_percent"]) == {"0", "0.25", "0.5", "0.75", "1"}
    assert saved["certified_accuracy_percent"]["0"] == 75.0 and saved["abstain_percent"] == 25.0
    assert saved["per_image"]["prediction"] == result.predictions.tolist()
    text = paths["markdown"].read_text()
    assert "r = 0.25" in text and "| linear | 75.00 |" in text
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"
    radii, accuracy = result.curve()
    assert accuracy[0] == 75.0 and accuracy == sorted(accuracy, reverse=True)


def _checkpoint(tmp_path) -> str:
    from pni.checkpoint import FORMAT, VERSION, atomic_save
    from pni.models import model_meta

    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W")
    path = tmp_path / "run" / "checkpoint.pt"
    atomic_save({"format": FORMAT, "version": VERSION, "model": model.state_dict(),
                 "model_meta": model_meta(model), "config": {"dataset": "mnist-sample"}}, path)
    return str(path)


def _certify_command(*argv: str) -> int:
    from pni.cli.certify import add_certify_parser

    parser = argparse.ArgumentParser(prog="pni")
    add_certify_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["certify", *argv])
    return args.func(args)


def test_certify_command_writes_results_next_to_the_checkpoint(tmp_path, capsys):
    path = _checkpoint(tmp_path)
    code = _certify_command(path, "--sigma", "0.25", "--noise-samples", "40", "--n0", "10", "--num-images", "10",
                            "--batch-size", "200", "--quiet")
    out = capsys.readouterr().out
    assert code == 0 and "lenet5 (PNI-W)" in out and "r = 0.5" in out
    folder = tmp_path / "run" / "certify"
    saved = json.loads((folder / "certify.json").read_text())
    assert saved["images"] == 10 and saved["subset"]["n"] == 10
    assert (folder / "certify.md").exists() and (folder / "certify.png").exists()


def test_certify_command_check_attacks_the_certified_images(tmp_path, capsys, monkeypatch):
    import pni.certification.check as certify_check

    path = _checkpoint(tmp_path)
    seen = {}
    real = certify_check.cross_check_certificates

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(certify_check, "cross_check_certificates", spy)
    # sigma 0.01: the random model is nearly deterministic, so it certifies images to attack
    code = _certify_command(path, "--sigma", "0.01", "--noise-samples", "40", "--n0", "10", "--num-images", "6",
                            "--batch-size", "200", "--quiet", "--check", "2", "--check-steps", "2")
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "certify" / "check.json").read_text())
    assert code == 0 and "Certificates against attacks" in out and "check.json" in out
    assert seen["max_images"] == 2 and seen["pgd_steps"] == 2 and seen["cw_options"] == {"steps": 2}
    assert set(saved["attacks"]) == {"cw", "pgd-l2"} and isinstance(saved["ok"], bool)
    assert saved["attacks"]["cw"]["images"] == min(2, len(saved["per_image"]["index"])) <= 2
    with pytest.raises(CertifyError, match="--check"):
        _certify_command(path, "--sigma", "0.25", "--check", "-1")


@pytest.mark.parametrize("argv, match", [(("--sigma", "-1"), "sigma"), (("--sigma", "0.25", "--n0", "50", "--noise-samples", "10"), "n0")])
def test_certify_command_rejects_bad_values_in_one_line(tmp_path, argv, match):
    with pytest.raises(CertifyError, match=match):
        _certify_command(_checkpoint(tmp_path), *argv)


def test_pni_certify_rejects_a_bad_flag_value_in_one_line(tmp_path, capsys):
    from pni.cli import app as cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["certify", str(_checkpoint(tmp_path)), "--sigma", "0.25", "--num-images", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--num-images" in err and len(err.strip().splitlines()) == 1


# --- training building blocks ---------------------------------------------------------------

def test_gaussian_augment_adds_unclipped_noise_of_the_given_std():
    x = torch.zeros(64, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    x[:32] = 1.0
    gen = torch.Generator().manual_seed(0)
    out = gaussian_augment(x, 0.5, gen)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    noise = out - x
    assert abs(float(noise.std()) - 0.5) < 0.02 and abs(float(noise.mean())) < 0.02
    assert float(out.min()) < 0 and float(out.max()) > 1  # not clipped to [0, 1]
    assert torch.equal(out, gaussian_augment(x, 0.5, torch.Generator().manual_seed(0)))
    assert gaussian_augment(x, 0.0) is x
    with pytest.raises(CertifyError, match="sigma"):
        gaussian_augment(x, -0.1)


def test_rse_inject_puts_frozen_noise_at_every_layer_input():
    model = rse_inject(pni.create_model("lenet5"), 0.2)
    spec = pni.injection_spec(model)
    assert spec.location == "A-b" and len(spec.layers) == 5
    alphas = pni.alpha_parameters(model)
    assert len(alphas) == 5 and all(not a.requires_grad and float(a) == pytest.approx(0.2) for a in alphas)


# --- certificates against attacks (item 3) ----------------------------------------------------

CHEAP = {"cw_options": {"steps": 60, "binary_search_steps": 3}, "pgd_steps": 20, "pgd_eot": 2,
         "samples": 8, "predict_n": 400}


def test_cross_check_finds_no_violation_of_true_certificates():
    model = LinearTwoClass()
    x, y = model.images_at([0.1, 0.25, -0.2, 0.001])
    result = certify(model, (x, y), 0.25, n0=50, n=2000)
    check = cross_check_certificates(model, (x, y), result, **CHEAP)
    assert check.indices.tolist() == [0, 1, 2]  # the abstained image is not attacked
    assert check.ok and check.records() == []
    assert check.counts("pgd-l2")["within_radius"] == 3  # PGD stays strictly inside the radius
    assert (check.l2["pgd-l2"] < check.radii).all()
    assert "no violation" in certificate_check_markdown(check)


def test_cross_check_flags_a_planted_violation():
    model = LinearTwoClass()
    x, y = model.images_at([0.1, 0.25, -0.2])
    result = certify(model, (x, y), 0.25, n0=50, n=2000)
    planted = dataclasses.replace(result, radii=result.radii * 4)  # radii the model cannot have
    check = cross_check_certificates(model, (x, y), planted, attacks=("pgd-l2",), **CHEAP)
    assert not check.ok
    assert {r["image"] for r in check.records()} == {0, 1, 2}
    assert all(r["l2"] < r["radius"] and r["predicted_class"] != r["certified_class"] for r in check.records())
    assert "VIOLATIONS FOUND" in certificate_check_markdown(check) and json.dumps(check.to_json())


def test_cross_check_refuses_other_data():
    model = LinearTwoClass()
    x, y = model.images_at([0.1, 0.25])
    result = certify(model, (x, y), 0.25, n0=10, n=100)
    with pytest.raises(CertifyError, match="not the data certified"):
        cross_check_certificates(model, (x[:1], y[:1]), result)


# --- Gaussian-augmented training certifies (about 5 s) -----------------------------------------

def test_a_model_trained_with_input_noise_certifies_at_radius_025():
    torch.manual_seed(0)
    train = pni.load_dataset("mnist-sample", "train")
    test = pni.load_dataset("mnist-sample", "test").subset(40)
    model = pni.create_model("lenet5")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x_all, y_all = train.tensors()
    for _ in range(3):
        for idx in torch.randperm(len(y_all)).split(128):
            loss = nn.functional.cross_entropy(model(gaussian_augment(x_all[idx], 0.25)), y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    result = certify(model, test, 0.25, n0=50, n=1000, alpha=0.001, batch_size=2000)
    assert result.certified_accuracy(0.25) > 0.5  # 92.5% measured; n = 1000 caps R at 0.62


# --- broken models and mismatched data are refused (issue 22) --------------------------

@pytest.mark.parametrize("where", ["weight nan", "weight inf", "alpha nan"])
def test_certify_refuses_a_checkpoint_with_non_finite_weights_or_alphas(tmp_path, where):
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5)
    state = model.state_dict()
    key = next(k for k in state if ("alpha" in k) == (where == "alpha nan") and k.startswith("conv1"))
    state[key].view(-1)[0] = float("inf") if where == "weight inf" else float("nan")
    from pni.checkpoint import FORMAT, VERSION, atomic_save
    from pni.models import model_meta

    path = tmp_path / "run" / "checkpoint.pt"
    atomic_save({"format": FORMAT, "version": VERSION, "model": state,
                 "model_meta": model_meta(model), "config": {"dataset": "mnist-sample"}}, path)
    with pytest.raises(CertifyError, match=r"^cannot certify: the model's weights are not finite \(.+ holds NaN or inf\)"):
        _certify_command(str(path), "--sigma", "0.25", "--n", "20", "--n0", "10", "--subset", "4", "--quiet")
    assert not (tmp_path / "run" / "certify").exists()


def test_certify_refuses_data_of_another_dataset(tmp_path):
    model = pni.create_model("resnet20", num_classes=2)  # 3x32x32, 2 classes
    mnist = pni.load_dataset("mnist-sample", "test").subset(10)
    with pytest.raises(CertifyError, match=r"^cannot certify: images have 1 channel\(s\) but the model takes 3"):
        certify(model, mnist, 0.25, n0=10, n=20)
    x = torch.rand(4, 3, 32, 32)
    with pytest.raises(CertifyError, match=r"^cannot certify: labels must be classes 0 to 1 of the model, got 7"):
        certify(model, (x, torch.tensor([0, 1, 7, 1])), 0.25, n0=10, n=20)


def test_certify_command_refuses_a_model_of_another_dataset_before_timing_it(tmp_path, capsys):
    from pni import cli
    from pni.checkpoint import FORMAT, VERSION, atomic_save
    from pni.models import model_meta

    model = pni.create_model("resnet20", num_classes=2)  # 3x32x32 images, 2 classes
    path = tmp_path / "run" / "checkpoint.pt"
    atomic_save({"format": FORMAT, "version": VERSION, "model": model.state_dict(),
                 "model_meta": model_meta(model), "config": {"dataset": "cifar10"}}, path)
    code = cli.main(["certify", str(path), "--sigma", "0.25", "--noise-samples", "20", "--n0", "10", "--num-images", "10",
                     "--dataset", "mnist-sample"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "pni certify: error: cannot certify: images have 1 channel(s) but the model takes 3 (input shape "
        "(3, 32, 32)): data of another dataset?")
    assert not (tmp_path / "run" / "certify").exists()
