"""FGSM (Eq. 1) and L-inf PGD (Eq. 2 / Eq. 12), with EOT over the model's noise."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import (
    LossFn,
    check_eps,
    check_images,
    check_positive_int,
    cross_entropy_sum,
    frozen_parameters,
    input_gradient,
    project_linf,
)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, eot: int = 1,
         loss_fn: LossFn = cross_entropy_sum) -> Tensor:
    """One step ``x + eps * sign(grad)`` clipped to [0, 1] (Eq. 1); ``eot`` averages the
    gradient over that many noise draws."""
    return pgd(model, x, y, eps, step_size=eps, steps=1, random_start=False, eot=eot, loss_fn=loss_fn)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int,
        random_start: bool = True, eot: int = 1, loss_fn: LossFn = cross_entropy_sum,
        generator: torch.Generator | None = None) -> Tensor:
    """L-inf projected gradient ascent (Madry et al.; the paper's Eq. 2, Eq. 12 with noise on).

    Starts at a uniform point of the eps-ball when ``random_start``; every step moves by
    ``step_size * sign(grad)`` and projects back onto the eps-ball and [0, 1]. The
    gradient is averaged over ``eot`` noise draws. The model's train/eval mode and noise
    switch are used as they are and left unchanged.
    """
    eps = check_eps(eps)
    check_eps(step_size, "step_size")
    check_positive_int(steps, "steps", minimum=0)
    check_positive_int(eot, "eot")
    check_images(x, y)
    x = x.detach()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    with frozen_parameters(model):
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, y, eot, loss_fn)
            x_adv = project_linf(x_adv + step_size * grad.sign(), x, eps)
    return x_adv.detach()
