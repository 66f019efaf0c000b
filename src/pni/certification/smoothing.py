"""Randomized-smoothing certificates (Cohen, Rosenfeld, Kolter, ICML 2019) for noisy models.

The smoothed classifier is ``g(x) = argmax_c P(f(x + delta) = c)``, ``delta ~ N(0, sigma^2 I)``
(Cohen's Eq. 1), with ``delta`` added in the model's input space [0, 1] (the pni models
normalize inside) and ``x + delta`` not clipped, so Theorem 1 applies as stated: if
``P(f(x + delta) = c_A) >= p_A > 1/2`` then ``g(x + e) = c_A`` for every ``||e||_2 < R``,
``R = sigma * Phi^-1(p_A)`` (Theorem 1 with ``p_B = 1 - p_A``).

``certify`` is Cohen's CERTIFY: guess ``c_A`` from ``n0`` samples, count it in ``n`` fresh
samples, take the one-sided (1 - alpha) Clopper-Pearson lower bound ``p_A_lower`` and return
``c_A`` with ``R = sigma * Phi^-1(p_A_lower)``, or abstain (-1) when ``p_A_lower <= 1/2``.
``predict`` is Cohen's PREDICT: the top class of ``n`` samples when a two-sided binomial test
of ``n_A`` against ``n_A + n_B`` at 1/2 has p-value ``<= alpha``, else abstain.

**A randomized base classifier is allowed.** A model that draws its own noise ``eps``
(PNI) is a deterministic ``f(x, eps)`` with ``eps`` independent of ``delta``. With
``h_c(x) = P_eps(f(x, eps) = c)``, ``P(f(x + delta, eps) = c) = E_delta[h_c(x + delta)]``, and
Theorem 1 holds for any ``h: R^d -> [0, 1]``: the Neyman-Pearson argument of Cohen's proof
covers randomized decision rules, and ``x -> sigma * Phi^-1(E_delta[h(x + delta)])`` is
1-Lipschitz for every such ``h`` (Salman et al. 2019, Lemma 2). PNI's input-dependent scale
``std(v)`` is part of ``f``; only the distribution of ``eps`` must not depend on the input.
What the statistics need is that each image's samples are i.i.d.: the base classifier is
the model on *one* image. PNI draws one weight noise per forward call for the whole batch and
scales activation noise by a std over the whole batch; ``pni.certification.sampling`` scales it per
row instead and never puts two samples of one image in the same weight-noise pass (its
docstring says why that keeps Cohen's per-image bound exact).
"""
from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .sampling import count_votes, is_random_model, sampling
from ..settings import check_int
from ..data import Dataset, as_tensors
from ..models.modes import model_device
from ..noise import freeze_alphas, inject
from ..errors import PNIError

ABSTAIN = -1
REPORT_RADII: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


class CertifyError(PNIError):
    """A bad certification argument (sigma, n, n0, alpha, data); the message names it."""


# --- argument checks ------------------------------------------------------------------

def check_sigma(sigma: Any, name: str = "sigma", allow_zero: bool = False,
                what: str = "the noise std in [0, 1] pixel units") -> float:
    """``sigma`` as a float: finite and > 0 (>= 0 with ``allow_zero``), else CertifyError."""
    ok = isinstance(sigma, numbers.Real) and not isinstance(sigma, bool) and math.isfinite(sigma)
    if not ok or not (sigma >= 0 if allow_zero else sigma > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise CertifyError(f"{name} must be a finite number {bound} ({what}), got {sigma!r}")
    return float(sigma)


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    return check_int(value, name, minimum, CertifyError)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise CertifyError(f"alpha must be a number in (0, 1) (the failure probability), got {alpha!r}")
    return float(alpha)


def image_tensors(data: Dataset | tuple[Tensor, Tensor] | Tensor) -> tuple[Tensor, Tensor]:
    """Float images in [0, 1] and labels from a dataset, an (images, labels) pair or an image
    tensor (labels 0 then); CertifyError when there is no image."""
    if isinstance(data, Tensor):
        data = (data, torch.zeros(len(data), dtype=torch.long))
    images, labels = as_tensors(data)
    if len(images) == 0:
        raise CertifyError("no images to certify: the data is empty")
    return images, labels


def check_fit(model: nn.Module, x: Tensor, labels: Tensor) -> None:
    """The checks ``pni eval`` and ``pni audit`` make (``attacks._common.check_model_inputs``):
    finite weights and alphas, pixels in [0, 1], images of a shape the model takes, labels
    among its classes; one-line CertifyError otherwise (a NaN model "certifies" class 0)."""
    from ..attacks._common import AttackError, check_model_inputs

    try:
        check_model_inputs(model, x, labels.to(x.device))
    except AttackError as error:
        raise CertifyError(f"cannot certify: {error}") from None


# --- training building blocks (item 2) --------------------------------------------------

def gaussian_augment(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Cohen et al.'s training augmentation: ``x + delta``, ``delta ~ N(0, sigma^2 I)`` in [0, 1]
    pixel space, not clipped (the inputs the smoothed classifier will feed the base model).
    ``sigma = 0`` returns ``x``. The noise keeps ``x``'s memory format (channels_last)."""
    sigma = check_sigma(sigma, allow_zero=True)
    if sigma == 0:
        return x
    return x + sigma * torch.empty_like(x).normal_(generator=generator)


def rse_inject(model: nn.Module, init_alpha: float, **inject_options: Any) -> nn.Module:
    """RSE-style baseline (Liu et al. 2018, Random Self-Ensemble): fixed noise at the input of
    every Conv/Linear layer, the network input included (PNI's ``A-b``), at scale
    ``init_alpha * std(v)``, not trained (alpha frozen). Train it without adversarial examples
    and predict by a vote over noise draws (``evaluate(..., votes=k)``), as RSE does."""
    check_sigma(init_alpha, "init_alpha", what="the noise scale, a multiple of std(v)")
    inject(model, location="A-b", init_alpha=float(init_alpha), **inject_options)
    freeze_alphas(model)
    return model


# --- sampling (Cohen's SAMPLEUNDERNOISE; the schemes: ``pni.certification.sampling``) ----------

def sample_counts(model: nn.Module, data: Dataset | tuple[Tensor, Tensor] | Tensor, sigma: float,
                  num: int, batch_size: int = 1000, seed: int = 0) -> Tensor:
    """Cohen's SAMPLEUNDERNOISE for every image: class counts ``(N, K)`` of ``f(x + delta)``
    over ``num`` i.i.d. draws (eval mode, seeded, the model's noise fresh per sample)."""
    sigma, num = check_sigma(sigma), check_count(num, "num")
    batch_size = check_count(batch_size, "batch_size")
    x = image_tensors(data)[0].to(model_device(model))
    with sampling(model, x, seed) as (sampler, generator):
        return count_votes(sampler, x, num, sigma, batch_size, generator)


# --- the bounds -----------------------------------------------------------------------

def lower_confidence_bound(k: Tensor | np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial p from ``k`` successes
    in ``n`` trials: the alpha quantile of Beta(k, n - k + 1), 0 where k = 0 (Cohen's
    LOWERCONFBOUND)."""
    from scipy.stats import beta

    k = np.asarray(k.cpu() if isinstance(k, Tensor) else k, dtype=np.float64)
    safe = np.maximum(k, 1.0)
    return np.where(k > 0, beta.ppf(alpha, safe, n - safe + 1), 0.0)


def certified_radius(p_lower: np.ndarray | float, sigma: float) -> np.ndarray:
    """``sigma * Phi^-1(p_lower)`` (Theorem 1 with ``p_B = 1 - p_A``): positive iff p_lower > 1/2."""
    from scipy.stats import norm

    return sigma * norm.ppf(np.asarray(p_lower, dtype=np.float64))


def binomial_p_values(n_a: Tensor | np.ndarray, n_b: Tensor | np.ndarray) -> np.ndarray:
    """Two-sided binomial test p-values of ``n_a`` successes in ``n_a + n_b`` trials at p = 1/2
    (Cohen's BINOMPVALUE), by ``scipy.stats.binomtest``."""
    from scipy.stats import binomtest

    a = np.asarray(n_a.cpu() if isinstance(n_a, Tensor) else n_a, dtype=np.int64)
    b = np.asarray(n_b.cpu() if isinstance(n_b, Tensor) else n_b, dtype=np.int64)
    return np.array([binomtest(int(i), int(i + j), 0.5).pvalue if i + j > 0 else 1.0
                     for i, j in zip(a.ravel(), b.ravel())]).reshape(a.shape)


# --- PREDICT ------------------------------------------------------------------------------

@dataclass
class SmoothedPrediction:
    """Cohen's PREDICT per image: ``classes`` (-1: abstain), the class ``counts`` (N, K) and
    the binomial test's ``p_values``."""

    classes: Tensor
    counts: Tensor
    p_values: Tensor
    sigma: float
    n: int
    alpha: float


def predict(model: nn.Module, data: Dataset | tuple[Tensor, Tensor] | Tensor, sigma: float,
            n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000,
            seed: int = 0) -> SmoothedPrediction:
    """Cohen's PREDICT: the top class ``c_A`` of ``n`` noise samples when the two-sided binomial
    test of ``n_A`` against ``n_A + n_B`` at 1/2 has p-value <= ``alpha``, else abstain (-1).
    It returns a class other than ``g(x)`` with probability at most ``alpha`` (Prop. 1)."""
    alpha = _check_alpha(alpha)
    x, labels = image_tensors(data)
    check_fit(model, x.to(model_device(model)), labels)
    counts = sample_counts(model, data, sigma, check_count(n, "n"), batch_size, seed).cpu()
    top2 = counts.topk(min(2, counts.shape[1]), dim=1)
    n_b = top2.values[:, 1] if counts.shape[1] > 1 else torch.zeros_like(top2.values[:, 0])
    p_values = torch.from_numpy(binomial_p_values(top2.values[:, 0], n_b))
    classes = torch.where(p_values <= alpha, top2.indices[:, 0], ABSTAIN)
    return SmoothedPrediction(classes, counts, p_values, float(sigma), int(n), alpha)


# --- CERTIFY ------------------------------------------------------------------------------

def certify(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], sigma: float, n0: int = 100,
            n: int = 10_000, alpha: float = 0.001, batch_size: int = 1000, seed: int = 0,
            progress: bool = False) -> Certification:
    """Cohen's CERTIFY (Cohen et al. 2019, Sec. 3.2; radius from Theorem 1) on every image.

    ``n0`` samples of ``f(x + delta)``, ``delta ~ N(0, sigma^2 I)``, select ``c_A``; ``n`` fresh
    ones bound ``p_A`` from below with confidence ``1 - alpha`` (Clopper-Pearson), giving the L2
    radius ``sigma * Phi^-1(p_A_lower)``, or an abstention when ``p_A_lower <= 1/2``. The model
    runs in eval mode (its mode restored after) with its noise switch as it is; a randomized
    model draws fresh noise per sample. Same seed, batch size and device: same result.

    Args:
        model: the base classifier ``f`` (images in [0, 1]; PNI noise allowed).
        data: a pni Dataset or an ``(images, labels)`` pair, images (N, C, H, W) in [0, 1].
        sigma: std of the Gaussian noise, in [0, 1] pixel units (> 0).
        n0: samples that select the class (default 100; at most ``n``).
        n: samples that bound its probability (default 10,000).
        alpha: failure probability of the certificate (default 0.001).
        batch_size: noisy samples per forward pass (default 1000).
        seed: seeds the Gaussian noise and the model's own noise (default 0); the caller's
            random state is left as it was.
        progress: show a progress bar over all samples (default False).

    Returns:
        Certification: per image the class (-1: abstain) and certified L2 radius (0 when
        abstained), ``p_lower`` and counts; ``certified_accuracy(r)`` summarizes it.

    Raises:
        CertifyError: a bad ``sigma``, ``n0``, ``n``, ``alpha`` or ``batch_size``, ``n0 > n``,
            or no image; weights or alphas that are not finite, images or labels that do
            not fit the model (``check_fit``).

    Example:
        >>> import pni
        >>> model = pni.create_model("lenet5")
        >>> data = pni.load_dataset("mnist-sample", "test").subset(4)
        >>> result = pni.certify(model, data, sigma=0.25, n0=10, n=100, batch_size=100)
        >>> result.predictions.shape, result.radii.shape, bool((result.radii >= 0).all())
        (torch.Size([4]), torch.Size([4]), True)
    """
    sigma, n0, n, alpha, batch_size = _check_settings(sigma, n0, n, alpha, batch_size)
    x, labels = image_tensors(data)
    x = x.to(model_device(model))
    check_fit(model, x, labels)
    bar = _progress_bar(len(x) * (n0 + n)) if progress else None
    started = time.perf_counter()
    try:
        with sampling(model, x, seed) as (sampler, generator):
            guess = count_votes(sampler, x, n0, sigma, batch_size, generator, bar).argmax(1)
            counts = count_votes(sampler, x, n, sigma, batch_size, generator, bar)
            top = counts.gather(1, guess[:, None]).squeeze(1).cpu()
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    p_lower = torch.from_numpy(lower_confidence_bound(top, n, alpha))
    certified = p_lower > 0.5
    radii = torch.where(certified, torch.from_numpy(certified_radius(p_lower.numpy(), sigma)), 0.0)
    return Certification(predictions=torch.where(certified, guess.cpu(), ABSTAIN), radii=radii,
                         labels=labels.cpu(), p_lower=p_lower, top_counts=top, sigma=sigma, n0=n0, n=n,
                         alpha=alpha, seed=seed, seconds=seconds,
                         subset=data.subset_info if isinstance(data, Dataset) else None)


def _check_settings(sigma: Any, n0: Any, n: Any, alpha: Any, batch_size: Any) -> tuple[float, int, int, float, int]:
    sigma, alpha = check_sigma(sigma), _check_alpha(alpha)
    n0, n, batch_size = check_count(n0, "n0"), check_count(n, "n"), check_count(batch_size, "batch_size")
    if n0 > n:
        raise CertifyError(f"n0 ({n0}, the samples that select the class) must not exceed n ({n}, "
                           f"the samples that bound its probability)")
    return sigma, n0, n, alpha, batch_size


def _progress_bar(total: int) -> Any:
    from ..progress import progress_bar

    return progress_bar(total, "certify", unit="sample", unit_scale=True)  # log files: a line per few %


# --- the result -----------------------------------------------------------------------------

@dataclass
class Certification:
    """Per image: ``predictions`` (-1: abstain), certified L2 ``radii`` (0 where abstained),
    ``labels``, ``p_lower`` and ``top_counts`` (of the selected class among ``n``); the settings
    and the wall time (``seconds``). Its report and files: ``pni.reports.certify``
    (``certification_markdown``, ``write_certification``)."""

    predictions: Tensor
    radii: Tensor
    labels: Tensor
    p_lower: Tensor
    top_counts: Tensor
    sigma: float
    n0: int
    n: int
    alpha: float
    seed: int
    seconds: float
    subset: dict[str, Any] | None = None

    @property
    def correct(self) -> Tensor:
        """Certified for the right class (at radius 0: the smoothed classifier is right)."""
        return self.predictions == self.labels

    def certified_accuracy(self, radius: float) -> float:
        """Fraction of images with the right class certified at L2 radius >= ``radius``."""
        return float((self.correct & (self.radii >= radius)).double().mean())

    @property
    def abstain_rate(self) -> float:
        return float((self.predictions == ABSTAIN).double().mean())

    @property
    def time_per_image(self) -> float:
        return self.seconds / max(len(self.labels), 1)

    def curve(self, radii: Sequence[float] | None = None) -> tuple[list[float], list[float]]:
        """Certified accuracy (%) against radius; by default 0 .. past the largest radius."""
        if radii is None:
            top = max(1.0, float(self.radii.max()) * 1.05)
            radii = np.linspace(0.0, top, 201).tolist()
        return [float(r) for r in radii], [100 * self.certified_accuracy(r) for r in radii]

    def summary(self) -> dict[str, Any]:
        return {"certified_accuracy_percent": {f"{r:g}": 100 * self.certified_accuracy(r) for r in REPORT_RADII},
                "abstain_percent": 100 * self.abstain_rate, "seconds_per_image": self.time_per_image,
                "images": len(self.labels)}

    def to_json(self) -> dict[str, Any]:
        out = {"method": "randomized smoothing, CERTIFY (Cohen, Rosenfeld, Kolter 2019)",
               "sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha, "seed": self.seed,
               "seconds": self.seconds, **self.summary(),
               "per_image": {"label": self.labels.tolist(), "prediction": self.predictions.tolist(),
                             "radius": self.radii.tolist(), "p_lower": self.p_lower.tolist(),
                             "top_count": self.top_counts.tolist()}}
        if self.subset is not None:
            out["subset"] = self.subset
        return out


def certify_checkpoint(path: str, sigma: float, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
                       subset: int | None = None, dataset: str | None = None, data_dir: str | None = None,
                       split: str = "test", batch_size: int = 1000, seed: int = 0, device: str = "cpu",
                       progress: bool = False, subset_seed: int = 0) -> tuple[Certification, str]:
    """``certify`` on a ``pni train`` checkpoint and its own dataset (``subset``: a class-stratified
    sample of that many images, ``Dataset.subset``); returns the result and a model label."""
    result, run = certify_opened(path, sigma, n0, n, alpha, subset, dataset, data_dir, split, batch_size,
                                 seed, device, progress, subset_seed)
    return result, run.label


def certify_opened(path: str, sigma: float, n0: int = 100, n: int = 10_000, alpha: float = 0.001,
                   subset: int | None = None, dataset: str | None = None, data_dir: str | None = None,
                   split: str = "test", batch_size: int = 1000, seed: int = 0, device: str = "cpu",
                   progress: bool = False, subset_seed: int = 0) -> tuple[Certification, Any]:
    """``certify_checkpoint``, returning the opened run (``pni.evaluation.opened_run.OpenedRun``: model, data,
    label) with the result, for work on the same model and images (``certify_check``)."""
    from ..evaluation.opened_run import open_checkpoint

    _check_settings(sigma, n0, n, alpha, batch_size)
    if subset is not None:
        check_count(subset, "subset")
    run = open_checkpoint(path, dataset=dataset, data_dir=data_dir, split=split, n=subset,
                          subset_seed=subset_seed, device=device)
    if progress:  # say up front how long it will take (on a model and data that fit)
        x, labels = image_tensors(run.data)
        check_fit(run.model, x.to(device), labels)
        from ..evaluation.estimate import announce, certify_seconds, measure_pass_rate, sample_images

        rate = measure_pass_rate(run.model, sample_images(run.data, device))
        announce("pni certify", certify_seconds(len(run.data), n0, n, rate), len(run.data), (n0 + n) / 3,
                 hint="--num-images or --noise-samples")
    return certify(run.model, run.data, sigma, n0, n, alpha, batch_size, seed, progress), run

