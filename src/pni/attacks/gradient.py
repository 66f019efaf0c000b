"""FGSM (Eq. 1) and L-inf PGD (Eq. 2 / Eq. 12), with EOT over the model's noise."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..models.fold import folded_batchnorm
from ._common import (
    LossFn,
    attack_mode,
    check_eps,
    check_images,
    check_positive_int,
    cross_entropy_sum,
    frozen_parameters,
    input_gradient,
    is_randomized,
    project_linf,
)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, eot: int = 1,
         loss_fn: LossFn = cross_entropy_sum, eot_batch: int | None = None,
         fold_bn: bool = True, keep_mode: bool = False) -> Tensor:
    """One step ``x + eps * sign(grad)`` clipped to [0, 1] (Eq. 1); ``eot`` averages the
    gradient over that many noise draws. Modes as ``pgd``."""
    return pgd(model, x, y, eps, step_size=eps, steps=1, random_start=False, eot=eot, loss_fn=loss_fn,
               eot_batch=eot_batch, fold_bn=fold_bn, keep_mode=keep_mode)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int,
        random_start: bool = True, eot: int = 1, loss_fn: LossFn = cross_entropy_sum,
        generator: torch.Generator | None = None, eot_batch: int | None = None,
        fold_bn: bool = True, keep_mode: bool = False) -> Tensor:
    """L-inf projected gradient ascent (Madry et al.; the paper's Eq. 2, Eq. 12 with noise on).

    Starts at a uniform point of the eps-ball when ``random_start``; every step moves by
    ``step_size * sign(grad)`` and projects back onto the eps-ball and [0, 1]. The
    gradient is averaged over ``eot`` noise draws (``eot_batch`` of them per vectorized
    pass, see ``input_gradient``); a model whose output is deterministic gets one pass per
    step, the same gradient. The model runs in eval mode (BatchNorm on its running
    statistics, which an attack never updates; the noise switch as it is) and every module is
    back in its own mode afterwards; ``keep_mode=True`` attacks it in its current mode. In
    eval mode, ``fold_bn`` runs each declared (conv, BatchNorm) pair as one convolution
    (``pni.models.fold``): the same function, about 8% faster. NaN/inf pixels, labels
    outside the model's classes and images with another channel count are refused.
    """
    eps = check_eps(eps)
    check_eps(step_size, "step_size")
    check_positive_int(steps, "steps", minimum=0)
    check_positive_int(eot, "eot")
    check_images(x, y, model)
    with attack_mode(model, keep_mode):
        return pgd_unchecked(model, x, y, eps, step_size, steps, random_start, eot, loss_fn, generator,
                             eot_batch, fold_bn)


def pgd_unchecked(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int,
                  random_start: bool = True, eot: int = 1, loss_fn: LossFn = cross_entropy_sum,
                  generator: torch.Generator | None = None, eot_batch: int | None = None,
                  fold_bn: bool = True) -> Tensor:
    """``pgd`` without its argument checks: no host-device synchronization when ``eot`` is 1,
    so it can be captured in a CUDA graph (``pni.cuda_graphs``). Arguments as ``pgd``."""
    x = x.detach()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    fold = folded_batchnorm(model) if fold_bn else contextlib.nullcontext()
    with frozen_parameters(model), fold:
        if eot > 1 and steps and not model.training and not is_randomized(model, x):
            eot = 1  # (in train mode a probe pass would move BatchNorm statistics: no probe)
        for _ in range(steps):
            grad, _ = input_gradient(model, x_adv, y, eot, loss_fn, eot_batch)
            x_adv = project_linf(x_adv + step_size * grad.sign(), x, eps)
    return x_adv.detach()
