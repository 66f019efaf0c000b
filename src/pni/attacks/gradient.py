"""FGSM (Eq. 1) and L-inf PGD (Eq. 2 / Eq. 12), with EOT over the model's noise."""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from ..models.fold import folded_batchnorm
from .budget import madry_step_size
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
from .registry import LINF_THREAT, Attack, AttackFlag, AttackSpec, register_attack

DEFAULT_EOT = 20  # EOT-PGD in `pni eval`: noise draws each gradient is averaged over


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, eot: int = 1,
         loss_fn: LossFn = cross_entropy_sum, eot_batch: int | None = None,
         fold_bn: bool = True, keep_mode: bool = False) -> Tensor:
    """FGSM (Goodfellow et al. 2015; the paper's Eq. 1): one step ``x + eps * sign(grad)``.

    Distance: L-inf. The result is clipped to [0, 1]; it is ``pgd`` with one step of size
    ``eps`` and no random start, with the same modes and checks.

    Args:
        model: the classifier (images in [0, 1]), randomized or not.
        x: images, shape (N, C, H, W), values in [0, 1].
        y: integer labels, shape (N,).
        eps: the step and L-inf radius, in (0, 1] (the paper: 8/255 on CIFAR-10).
        eot: noise draws the gradient is averaged over (default 1).
        loss_fn: ``loss(logits, y)`` to ascend (default: summed cross-entropy).
        eot_batch: EOT draws per vectorized pass (default None: one per pass).
        fold_bn: run (conv, BatchNorm) pairs as one convolution in eval mode (default True).
        keep_mode: attack the model in its current mode instead of eval mode (default False).

    Returns:
        Tensor: the adversarial images, shape (N, C, H, W).

    Raises:
        AttackError: a bad ``eps`` or ``eot``, or images / labels the model does not take.

    Example:
        >>> import pni
        >>> model = pni.create_model("lenet5")
        >>> x, y = pni.load_dataset("mnist-sample", "test").subset(8).tensors()
        >>> x_adv = pni.attacks.fgsm(model, x, y, eps=0.1)
        >>> x_adv.shape, round(float((x_adv - x).abs().max()), 4)
        (torch.Size([8, 1, 28, 28]), 0.1)
    """
    return pgd(model, x, y, eps, step_size=eps, steps=1, random_start=False, eot=eot, loss_fn=loss_fn,
               eot_batch=eot_batch, fold_bn=fold_bn, keep_mode=keep_mode)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int,
        random_start: bool = True, eot: int = 1, loss_fn: LossFn = cross_entropy_sum,
        generator: torch.Generator | None = None, eot_batch: int | None = None,
        fold_bn: bool = True, keep_mode: bool = False) -> Tensor:
    """L-inf PGD (Madry et al. 2018; the paper's Eq. 2, and Eq. 12 with the noise on).

    Distance: L-inf. Starts at a uniform point of the eps-ball when ``random_start``; every
    step moves by ``step_size * sign(grad)`` and projects back onto the eps-ball and [0, 1].
    The gradient is averaged over ``eot`` noise draws (EOT); a model whose output is
    deterministic gets one pass per step, the same gradient. The model runs in eval mode
    (BatchNorm on its running statistics, never updated; the noise switch as it is) and every
    module is back in its own mode afterwards. Only input gradients are computed.

    Args:
        model: the classifier (images in [0, 1]; it normalizes inside), randomized or not.
        x: images, shape (N, C, H, W), values in [0, 1].
        y: integer labels, shape (N,).
        eps: radius of the L-inf ball, in (0, 1] (the paper: 8/255 on CIFAR-10).
        step_size: the step, in (0, 1] (the paper: 0.01; ``2.5 * eps / steps`` is Madry's rule).
        steps: iterations, >= 0 (the paper: 7 on CIFAR-10; 0: only the random start).
        random_start: start at a uniform point of the eps-ball (default True).
        eot: noise draws each gradient is averaged over (default 1: one stochastic pass).
        loss_fn: ``loss(logits, y)`` to ascend (default: summed cross-entropy).
        generator: random source of the random start (default None: the global one).
        eot_batch: EOT draws per vectorized pass (``input_gradient``; default None: one per pass).
        fold_bn: in eval mode, run each declared (conv, BatchNorm) pair as one convolution
            (``pni.models.fold``): the same function, about 8% faster (default True).
        keep_mode: attack the model in its current mode instead of eval mode (default False).

    Returns:
        Tensor: the adversarial images, shape (N, C, H, W), within ``eps`` of ``x`` and in [0, 1].

    Raises:
        AttackError: a bad ``eps``, ``step_size``, ``steps`` or ``eot``; images not (N, C, H, W)
            or not finite in [0, 1]; labels outside the model's classes; another channel count.

    Example:
        >>> import pni, torch
        >>> _ = torch.manual_seed(0)
        >>> model = pni.inject(pni.create_model("lenet5"), "W")
        >>> x, y = pni.load_dataset("mnist-sample", "test").subset(8).tensors()
        >>> x_adv = pni.attacks.pgd(model, x, y, eps=0.1, step_size=0.025, steps=3, eot=2)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
        (torch.Size([8, 1, 28, 28]), True)
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
    so it can be captured in a CUDA graph (``pni.training.cuda_graphs``). Arguments as ``pgd``."""
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


# --- `pni eval` attacks: fgsm, pgd, eot-pgd --------------------------------------------

def _build_fgsm(eps: float, **_: Any) -> tuple[Attack, dict[str, Any]]:
    return (lambda m, x, y: fgsm(m, x, y, eps)), {"eps": eps}


def _pgd_draws(eps: float, steps: int | None, step_size: float | None, draws: int,
               eot_batch: int | None = None) -> tuple[Attack, dict[str, Any]]:
    steps = 7 if steps is None else steps
    step_size = madry_step_size(eps, steps) if step_size is None else step_size
    params = {"eps": eps, "steps": steps, "step_size": step_size, "random_start": True, "eot": draws}
    return (lambda m, x, y: pgd(m, x, y, eps, step_size, steps, True, draws, eot_batch=eot_batch)), params


def _build_pgd(eps: float, steps: int | None, step_size: float | None, **_: Any) -> tuple[Attack, dict[str, Any]]:
    return _pgd_draws(eps, steps, step_size, 1)


def _build_eot_pgd(eps: float, steps: int | None, step_size: float | None, eot: int | None = None,
                   eot_batch: int | None = None) -> tuple[Attack, dict[str, Any]]:
    eot = DEFAULT_EOT if eot is None else check_positive_int(eot, "eot")
    return _pgd_draws(eps, steps, step_size, eot, eot_batch)


register_attack(AttackSpec("fgsm", "FGSM", LINF_THREAT, _build_fgsm))
register_attack(AttackSpec("pgd", "PGD", LINF_THREAT, _build_pgd))
register_attack(AttackSpec(
    "eot-pgd", "EOT-PGD", LINF_THREAT, _build_eot_pgd, options=("eot", "eot_batch"),
    flags=(AttackFlag("--eot", "eot", f"EOT-PGD: noise draws the gradient is averaged over "
                                      f"(default {DEFAULT_EOT})"),), one_draw_of="pgd"))
