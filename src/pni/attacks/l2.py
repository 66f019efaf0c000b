"""L2 PGD with EOT, and the smoothed soft classifier it attacks under randomized smoothing.

``pgd_l2`` is Madry et al.'s projected gradient ascent with the L2 steepest-ascent step:
``x_{t+1} = P(x_t + a * grad / ||grad||_2)``, ``P`` the projection onto the L2 ball of radius
eps around ``x`` and then onto [0, 1] (clipping only shortens the perturbation). The gradient
is averaged over ``eot`` forward passes (EOT, as ``pgd``).

``SmoothedSoftmax`` makes the smoothed classifier of Cohen et al. (2019) attackable: its
output is ``log E_delta[softmax(f(x + delta))]``, ``delta ~ N(0, sigma^2 I)``, estimated with
``samples`` draws per call; cross-entropy on it is the SmoothAdv attack loss of Salman et al.
(2019, Eq. 5). EOT over its calls then averages over fresh Gaussian draws and fresh draws of
the model's own noise.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.fold import conv_bn_pairs, folded_batchnorm
from .budget import madry_step_size
from ._common import (
    AttackError,
    LossFn,
    check_images,
    check_positive_int,
    cross_entropy_sum,
    frozen_parameters,
    input_gradient,
    is_randomized,
)


class SmoothedSoftmax(nn.Module):
    """``log E_delta[softmax(model(x + delta))]`` over ``samples`` Gaussian draws per call (not
    clipped, as the smoothed classifier). Log-probabilities: an attack's cross-entropy on it is
    ``-log`` of the smoothed probability of the label (Salman et al. 2019). The ``samples``
    copies go through one forward pass; the wrapper follows the model's train/eval mode."""

    def __init__(self, model: nn.Module, sigma: float, samples: int = 16) -> None:
        super().__init__()
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (
                math.isfinite(sigma) and sigma >= 0):
            raise AttackError(f"sigma must be a finite number >= 0, got {sigma!r}")
        self.model = model
        self.sigma = float(sigma)
        self.samples = check_positive_int(samples, "samples")
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        copies = x.repeat(self.samples, *([1] * (x.dim() - 1)))
        if self.sigma > 0:
            copies = copies + self.sigma * torch.randn_like(copies)
        probs = F.softmax(self.model(copies).float(), dim=1)
        return probs.view(self.samples, len(x), -1).mean(0).clamp_min(1e-30).log()

    def conv_bn_pairs(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """The wrapped model's (conv, BatchNorm) pairs, so ``folded_batchnorm`` folds them."""
        return conv_bn_pairs(self.model)


def _check_radius(eps: float | Tensor, n: int, name: str) -> Tensor | float:
    """A positive finite number, or one per sample (a tensor of shape ``(n,)``)."""
    if isinstance(eps, Tensor):
        if eps.shape != (n,) or not bool(torch.isfinite(eps).all()) or bool((eps <= 0).any()):
            raise AttackError(f"{name} must be positive finite numbers, one per image ({n}), "
                              f"got a tensor of shape {tuple(eps.shape)}")
        return eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
        raise AttackError(f"{name} must be a positive finite number (an L2 norm), got {eps!r}")
    return float(eps)


def _per_sample(value: Tensor | float, x: Tensor) -> Tensor:
    """``value`` as a ``(N, 1, ..., 1)`` tensor that broadcasts over ``x``."""
    t = value.to(x.device, x.dtype) if isinstance(value, Tensor) else torch.full((len(x),), value,
                                                                                   device=x.device, dtype=x.dtype)
    return t.view(-1, *([1] * (x.dim() - 1)))


def _l2(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def project_l2(x_adv: Tensor, x: Tensor, eps: Tensor) -> Tensor:
    """Projection onto the L2 ball of radius ``eps`` (per sample) around ``x``, then onto [0, 1]."""
    delta = x_adv - x
    delta = delta * torch.clamp(eps / _l2(delta).clamp_min(1e-12), max=1.0)
    return (x + delta).clamp_(0.0, 1.0)


def pgd_l2(model: nn.Module, x: Tensor, y: Tensor, eps: float | Tensor, step_size: float | Tensor | None = None,
           steps: int = 20, random_start: bool = True, eot: int = 1, loss_fn: LossFn = cross_entropy_sum,
           generator: torch.Generator | None = None, eot_batch: int | None = None,
           fold_bn: bool = True) -> Tensor:
    """L2 projected gradient ascent on ``loss_fn`` (Madry et al. 2018, L2 step), with EOT.

    ``eps`` and ``step_size`` are numbers or one value per image; ``step_size`` defaults to
    ``2.5 * eps / steps``. ``random_start`` begins at a uniform point of the eps-ball (from
    ``generator``). The gradient is averaged over ``eot`` noise draws (``input_gradient``); a
    deterministic eval-mode model gets one pass per step. The model's mode and noise switch
    are used as they are and left unchanged; only input gradients are computed. To attack the
    smoothed classifier, pass ``SmoothedSoftmax(model, sigma)``.
    """
    check_images(x, y)
    steps = check_positive_int(steps, "steps", minimum=0)
    eot = check_positive_int(eot, "eot")
    eps_t = _per_sample(_check_radius(eps, len(x), "eps"), x)
    if step_size is None:
        step_t = madry_step_size(eps_t, steps)
    else:
        step_t = _per_sample(_check_radius(step_size, len(x), "step_size"), x)
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        u = torch.rand((len(x),), generator=generator, device=x.device, dtype=x.dtype)
        radius = eps_t * _per_sample(u.pow(1.0 / x[0].numel()), x)  # uniform in the ball
        x_adv = project_l2(x + radius * direction / _l2(direction).clamp_min(1e-12), x, eps_t)
    fold = folded_batchnorm(model) if fold_bn else contextlib.nullcontext()
    with frozen_parameters(model), fold:
        if eot > 1 and steps and not model.training and not is_randomized(model, x):
            eot = 1
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, y, eot, loss_fn, eot_batch)
            x_adv = project_l2(x_adv + step_t * grad / _l2(grad).clamp_min(1e-12), x, eps_t)
    return x_adv.detach()
