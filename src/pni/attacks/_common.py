"""Shared pieces of the gradient attacks: argument checks, losses, the EOT input gradient.

Every attack works in [0, 1] pixel space and differentiates with respect to the input
only (``torch.autograd.grad``); parameter gradients are never computed.
"""
from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..settings import check_int
from ..errors import PNIError

LossFn = Callable[[Tensor, Tensor], Tensor]

# EOT draws run one per pass unless eot_batch asks for vectorized passes. Measured on CPU
# (benchmarks/eot.py, 1 thread): vectorizing all 20 draws makes LeNet-5 on 16 images
# 1.3-1.8x faster, but ResNet-20 on 32-128 images 2-4.5x slower with 5-7x the memory
# (grouped convolutions); 4 draws per pass are still slower there.

# Models whose forward failed under torch.func.vmap: EOT falls back to the plain loop.
_NO_VMAP: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class AttackError(PNIError):
    """A bad attack argument (eps, steps, eot, ...); the message names it."""


def check_eps(eps: float, name: str = "eps") -> float:
    if not isinstance(eps, (int, float)) or not 0.0 < float(eps) <= 1.0:
        raise AttackError(f"{name} must be in (0, 1] (images are in [0, 1]), got {eps!r}")
    return float(eps)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    return check_int(value, name, minimum, AttackError)


def check_images(x: Tensor, y: Tensor, model: nn.Module | None = None) -> None:
    """One-line AttackError unless ``x`` is an (N, C, H, W) batch of finite pixels in [0, 1]
    and ``y`` N integer labels; with ``model``, also its channel count and class range when
    it records them (``input_shape``, ``num_classes``, as ``pni.create_model`` models do)."""
    if x.dim() != 4:
        raise AttackError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise AttackError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise AttackError(f"images hold {bad} NaN or inf pixel(s); pixels must be finite, in [0, 1]")
        raise AttackError("images must lie in [0, 1] (the model normalizes internally)")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise AttackError(f"labels must be integer class indices, got dtype {y.dtype}")
    shape = getattr(model, "input_shape", None)
    if shape and x.shape[1] != shape[0]:
        raise AttackError(f"images have {x.shape[1]} channel(s) but the model takes {shape[0]} "
                          f"(input shape {tuple(shape)}): data of another dataset?")
    classes = getattr(model, "num_classes", None)
    if y.numel() and isinstance(classes, int):
        _check_labels(y, classes)


def _check_labels(y: Tensor, classes: int) -> None:
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise AttackError(f"labels must be classes 0 to {classes - 1} of the model, got "
                          f"{low if low < 0 else high}: data of another dataset?")


def non_finite_weight(model: nn.Module) -> str | None:
    """The name of the first parameter or floating buffer holding a NaN or inf, or None."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def check_model_inputs(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """One-line AttackError unless ``model`` has finite weights and ``(x, y)`` fits it:
    ``check_images``, then one forward pass of one image (its shape must fit the model; the
    random state is left as it was) whose outputs must cover every label."""
    check_images(x, y, model)
    bad = non_finite_weight(model)
    if bad is not None:
        raise AttackError(f"the model's weights are not finite ({bad} holds NaN or inf); a "
                          f"diverged training run? nothing meaningful can be measured on it")
    if not len(x):
        return
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices), attack_mode(model):
        try:
            logits = model(x[:1])
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise AttackError(f"images of shape {tuple(x.shape[1:])} do not fit the model "
                              f"({type(model).__name__}): {reason}") from None
    if logits.dim() == 2:
        _check_labels(y, logits.shape[1])


@contextlib.contextmanager
def attack_mode(model: nn.Module, keep_mode: bool = False) -> Iterator[None]:
    """The model in eval mode inside (BatchNorm on its running statistics, never updated by
    an attack; PNI noise stays on), every submodule back in its own mode on exit.
    ``keep_mode=True`` leaves the modes as they are (to attack a model in train mode)."""
    if keep_mode:
        yield
        return
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, training in modes:
            module.training = training


def class_margin(scores: Tensor, y: Tensor) -> Tensor:
    """``S_y - max_{j != y} S_j`` per sample: negative once the sample is misclassified
    (the C&W and ZOO objectives, on logits and on log-probabilities)."""
    true = scores.gather(1, y[:, None]).squeeze(1)
    other = scores.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


@dataclass
class PerturbationResult:
    """Per-sample outcome of an attack that searches for a small perturbation (C&W, ZOO):
    ``success`` (the returned example is misclassified by the majority vote over fresh noise
    draws: ``votes.judge_examples``), the perturbation's L2 norm, which samples the model
    classified correctly before the attack (same vote), and ``found``: the attack's own check
    during the search (on a randomized model, possibly one lucky draw)."""

    x_adv: Tensor
    success: Tensor
    initially_correct: Tensor
    l2: Tensor
    found: Tensor | None = None

    @property
    def success_rate(self) -> float:
        """Fraction of the initially correctly classified samples the attack fooled."""
        attacked = self.initially_correct
        return float(self.success[attacked].float().mean()) if attacked.any() else math.nan

    def per_sample(self) -> dict[str, Tensor]:
        out = {"l2": self.l2, "success": self.success, "initially_correct": self.initially_correct}
        if self.found is not None:
            out["found"] = self.found
        return out


def cross_entropy_sum(logits: Tensor, y: Tensor) -> Tensor:
    """Summed cross-entropy: per-sample input gradients do not depend on the batch size."""
    return F.cross_entropy(logits, y, reduction="sum")


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad inside, so forward passes record no weight graph."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def input_gradient(model: nn.Module, x: Tensor, y: Tensor, eot: int = 1,
                   loss_fn: LossFn = cross_entropy_sum,
                   eot_batch: int | None = None) -> tuple[Tensor, Tensor]:
    """The gradient of ``loss_fn(model(x), y)`` w.r.t. ``x``, averaged over ``eot`` forward
    passes (independent noise draws: Expectation over Transformation), and the logits averaged
    over the same draws (the expected logits C&W-EOT judges its iterates by).

    ``eot_batch`` draws go through one vectorized pass (``torch.func.vmap`` with
    ``randomness="different"``): every draw is independent, weight noise included (one
    weight draw per draw, shared by its images, exactly as in a plain forward). ``None``
    or 1: one draw per pass, the fastest for real-size models on CPU; vectorizing pays for
    tiny models and batches (see ``benchmarks/eot.py``).
    """
    check_positive_int(eot, "eot")
    if eot_batch is not None:
        check_positive_int(eot_batch, "eot_batch")
    per_pass = min(eot, eot_batch or 1)
    x = x.detach()
    grad = torch.zeros_like(x)
    logits_sum: Tensor | None = None
    done = 0
    while done < eot:
        draws = min(per_pass, eot - done)
        x_in = x.clone().requires_grad_(True)
        out = _vmapped_draws(model, x_in, y, loss_fn, draws) if draws > 1 else None
        if out is None:
            draws = 1
            logits = model(x_in)
            loss = loss_fn(logits, y)
            summed = logits.detach()
        else:
            loss, summed = out
        (g,) = torch.autograd.grad(loss, x_in)
        grad += g
        logits_sum = summed if logits_sum is None else logits_sum + summed
        done += draws
    assert logits_sum is not None
    return grad / eot, logits_sum / eot


def _vmapped_draws(model: nn.Module, x_in: Tensor, y: Tensor, loss_fn: LossFn,
                   draws: int) -> tuple[Tensor, Tensor] | None:
    """The summed loss of ``draws`` independent forward passes and their summed logits, in
    one vectorized pass; None when the model cannot run under vmap (then: the plain loop)."""
    if model in _NO_VMAP:
        return None

    def one_draw(_: Tensor) -> tuple[Tensor, Tensor]:
        logits = model(x_in)
        return loss_fn(logits, y), logits

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop")
            losses, logits = torch.func.vmap(one_draw, randomness="different")(
                torch.arange(draws, device=x_in.device))
    except (RuntimeError, NotImplementedError):
        _NO_VMAP.add(model)
        return None
    return losses.sum(), logits.detach().sum(0)


@torch.no_grad()
def is_randomized(model: nn.Module, x: Tensor) -> bool:
    """True when two forward passes on (a few of) ``x`` differ: the model draws noise.
    (In train mode the passes also move BatchNorm running statistics.)"""
    probe = x[:4]
    with torch.no_grad():
        return not torch.equal(model(probe), model(probe))


def project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Projection onto the L-inf ball of radius eps around x, intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
