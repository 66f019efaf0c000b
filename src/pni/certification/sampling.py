"""Cohen's SAMPLEUNDERNOISE for ``pni.certify``: class counts of ``f(x + delta)`` over i.i.d. draws.

Cohen et al.'s (ICML 2019) Clopper-Pearson bound and binomial test are statements about one
image: its ``num`` samples must be independent draws of ``f(x + delta)``, each with its own
``delta`` and its own draw of the model's noise ``eps`` (the base classifier is the model on
*one* image). Samples of *different* images may be correlated: each certificate holds with
probability ``1 - alpha`` on its own, whatever the other images' samples did. Hence, by how
the model draws its noise (``Sampler.scheme``):

- ``fixed`` (no randomness): plain batches of ``batch_size`` rows, image after image.
- ``rows`` (PNI noise on activations or the input only: ``A-a``, ``A-b``, ``I``): ``eta``
  has the batch dimension, one independent draw per row, and ``noise.per_sample_std`` scales
  it by the std of each row instead of the batch, so each row is exactly the model on a batch
  of one. Plain batches, laid out as ``fixed``.
- ``passes`` (PNI weight noise, ``W``, ``W+A-a``, ``W+A-b``): one weight draw per forward pass,
  shared by its rows. Rows are laid out sample-major (sample ``j`` of images ``1..N``, then
  sample ``j + 1``) and a pass is ``min(batch_size, N)`` consecutive rows, so it never holds
  two rows of one image (with fewer images than ``batch_size``, a block of whole rounds is
  drawn at once and run as passes of ``N`` rows). An image's samples then come from distinct
  passes, i.e. independent weight draws; activation noise as in ``rows``.
- ``sample`` (any other randomness, which pni cannot see): every row as a batch of one under
  ``torch.func.vmap(randomness="different")``, or a loop of such passes.

``certify``'s ``n0`` selection samples and ``n`` counting samples are separate calls, hence
separate passes: the selected class is independent of the counts, as CERTIFY needs. Under
weight noise at least ``num`` passes are needed (one per sample of an image); a loop of plain
``N``-row passes ran as fast as ``vmap`` over ``N``-row chunks (CPU, LeNet-5, ResNet-20).
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..models.fold import folded_batchnorm
from ..models.modes import eval_mode
from ..noise import NoiseInjection, noise_enabled, per_sample_std
from ..seeding import mix_seed

SCHEMES = ("fixed", "rows", "passes", "sample")


def _differs(model: nn.Module, x: Tensor) -> bool:
    probe = x[:2]
    return not torch.equal(model(probe), model(probe))


def is_random_model(model: nn.Module, x: Tensor) -> bool:
    """True when the model draws noise: an enabled PNI module, or two passes that differ."""
    if any(isinstance(m, NoiseInjection) and m.enabled for m in model.modules()):
        return True
    return _differs(model, x)


def sampling_scheme(model: nn.Module, x: Tensor) -> str:
    """How the model's samples are drawn (module docstring): ``fixed``, ``rows``, ``passes``
    or ``sample``. Probes the model on ``x[:2]`` with its PNI noise off for other randomness."""
    noises = [m for m in model.modules() if isinstance(m, NoiseInjection) and m.enabled]
    with noise_enabled(model, False):
        other = _differs(model, x)
    if other:
        return "sample"
    if not noises:
        return "fixed"
    return "passes" if any(m.site == "W" for m in noises) else "rows"


class Sampler:
    """The base classifier on the rows of a pass, by ``scheme`` (module docstring)."""

    def __init__(self, model: nn.Module, scheme: str) -> None:
        self.model = model
        self.scheme = scheme
        self.vmapped = torch.func.vmap(lambda xi: model(xi.unsqueeze(0)).squeeze(0), randomness="different")
        self.use_vmap = True

    def block_rows(self, images: int, batch_size: int) -> int:
        """Sample rows drawn at a time: ``batch_size``; under weight noise with fewer images,
        the whole rounds (one sample of every image) that fit."""
        if self.scheme == "passes" and images < batch_size:
            return batch_size // images * images
        return batch_size

    def owners(self, rows: Tensor, images: int, num: int) -> Tensor:
        """The image of each sample row: sample-major under weight noise, else image after image."""
        return rows % images if self.scheme == "passes" else rows // num

    def __call__(self, x: Tensor, images: int) -> Tensor:
        """Logits of a block of rows; under weight noise one pass per ``images`` consecutive rows
        (sample-major: distinct images), else one pass (``sample``: one per row)."""
        if self.scheme == "passes" and len(x) > images:
            return torch.cat([self.model(part) for part in x.split(images)])
        if self.scheme != "sample":
            return self.model(x)
        if self.use_vmap:
            try:
                return self.vmapped(x)
            except (RuntimeError, NotImplementedError) as error:
                self.use_vmap = False
                warnings.warn(f"the model cannot run under torch.func.vmap ({str(error).splitlines()[0]}); "
                              f"certifying with one forward pass per noise sample (slow)", stacklevel=3)
        return torch.cat([self.model(xi.unsqueeze(0)) for xi in x])


def count_votes(sampler: Sampler, x: Tensor, num: int, sigma: float, batch_size: int,
                generator: torch.Generator | None, progress: Any = None) -> Tensor:
    """``counts[i, c] = #{j < num: f(x_i + delta_ij) = c}``, ``sampler.block_rows`` samples at a
    time (several images per pass when ``num`` is smaller than ``batch_size``)."""
    total = len(x) * num
    step = sampler.block_rows(len(x), batch_size)
    counts: Tensor | None = None
    for start in range(0, total, step):
        owner = sampler.owners(torch.arange(start, min(start + step, total), device=x.device), len(x), num)
        batch = x[owner]
        batch = batch + sigma * torch.randn(batch.shape, generator=generator, device=x.device, dtype=x.dtype)
        logits = sampler(batch, len(x))
        if counts is None:
            counts = torch.zeros(len(x), logits.shape[1], dtype=torch.long, device=x.device)
        counts.view(-1).index_add_(0, owner * counts.shape[1] + logits.argmax(1), torch.ones_like(owner))
        if progress is not None:
            progress.update(len(owner))
    assert counts is not None
    return counts


@contextlib.contextmanager
def sampling(model: nn.Module, x: Tensor, seed: int) -> Iterator[tuple[Sampler, torch.Generator]]:
    """Eval mode, inference mode, BatchNorm folded, activation noise scaled per sample, and
    seeded randomness: the Gaussian noise from a generator seeded by ``seed``, the model's own
    noise from the global RNG seeded from ``seed`` inside a fork (the caller's random state is
    left as it was)."""
    device = x.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), eval_mode(model), torch.inference_mode(), \
            folded_batchnorm(model), per_sample_std(model):
        torch.default_generator.manual_seed(mix_seed(seed, 1))
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(mix_seed(seed, 1))
        generator = torch.Generator(device=device)
        generator.manual_seed(mix_seed(seed, 0))
        yield Sampler(model, sampling_scheme(model, x)), generator
