"""BatchNorm folded into the preceding convolution for eval-mode passes (attacks).

In eval mode BatchNorm is the affine map ``y = scale * z + shift`` with
``scale = gamma / sqrt(running_var + eps)`` and ``shift = beta - running_mean * scale``,
so ``bn(conv(x)) = conv'(x)`` with weight ``scale * W`` and bias ``shift``. The weight
noise of PNI-W is still drawn at every call (the fold scales the noisy weight), so the
folded model is the same random function; it saves the BatchNorm pass forward and
backward at every attack step. Pairs whose convolution carries output noise (A-a) are
left alone: that noise sits between the conv and its BatchNorm.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..noise import NoiseInjection

_OUTPUT_NOISE = "pni_output"


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The (conv, bn) pairs the model declares with a ``conv_bn_pairs()`` method, if any."""
    declare = getattr(model, "conv_bn_pairs", None)
    return list(declare()) if callable(declare) else []


def _fused_forward(conv: nn.Conv2d, scale: Tensor, shift: Tensor):
    def forward(x: Tensor) -> Tensor:
        weight = conv.weight * scale.view(-1, 1, 1, 1)  # conv.weight draws fresh noise
        bias = shift if conv.bias is None else shift + conv.bias * scale
        return conv._conv_forward(x, weight, bias)
    return forward


def _identity(x: Tensor) -> Tensor:
    return x


@contextlib.contextmanager
def folded_batchnorm(model: nn.Module) -> Iterator[int]:
    """Inside, every declared eval-mode (conv, BatchNorm) pair runs as one convolution.

    Yields the number of folded pairs (0 when the model declares none, is in train mode,
    or every pair carries output noise). Outputs equal the unfolded model's up to float
    rounding; parameters and buffers are not modified.
    """
    pairs = [] if model.training else conv_bn_pairs(model)
    folded: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []
    try:
        for conv, bn in pairs:
            if bn.training or not bn.track_running_stats or isinstance(
                    getattr(conv, _OUTPUT_NOISE, None), NoiseInjection):
                continue
            with torch.no_grad():
                scale = torch.rsqrt(bn.running_var + bn.eps)
                if bn.weight is not None:
                    scale = scale * bn.weight
                shift = -bn.running_mean * scale
                if bn.bias is not None:
                    shift = shift + bn.bias
            conv.forward = _fused_forward(conv, scale, shift)
            bn.forward = _identity
            folded.append((conv, bn))
        yield len(folded)
    finally:
        for conv, bn in folded:
            del conv.forward
            del bn.forward
