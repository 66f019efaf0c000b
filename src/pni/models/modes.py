"""Model state helpers: temporary eval mode that restores each model's own mode, a
temporary channels_last layout for a convolutional model on the CPU, and the device a model
lives on."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Every model in eval mode inside (BatchNorm on running statistics; PNI noise stays
    on), and back in the mode it had before on exit."""
    modes = [(model, model.training) for model in models]
    try:
        for model, _ in modes:
            model.eval()
        yield
    finally:
        for model, training in modes:
            model.train(training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def cpu_channels_last(model: nn.Module) -> Iterator[bool]:
    """Inside, a convolutional model on the CPU runs in channels_last (NHWC): its 4-D weights
    are stored so, and each 4-D input is converted on entry. Yields whether it did. On exit the
    weights are back in the standard layout. ``benchmarks/layout.py``: ResNet-20 forward and
    forward+backward about 1.2x, LeNet-5 about 2x faster on one CPU thread; the convolutions
    change only their summation order. Input gradients keep the standard layout
    (attacks flatten them). A no-op on other devices (not measured there), for a model without
    4-D parameters, one whose 4-D tensors are already in some other layout (user-managed), and
    one with modules of its own (a user's model: its forward may ``.view`` an NHWC tensor)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.dim() == 4]
    if (model_device(model).type != "cpu" or not all(t.is_contiguous() for t in tensors)
            or all(_ambiguous(t) for t in tensors) or not _known_modules(model)):
        yield False
        return
    model.to(memory_format=torch.channels_last)
    handle = model.register_forward_pre_hook(_to_channels_last)
    try:
        yield True
    finally:
        handle.remove()
        model.to(memory_format=torch.contiguous_format)


def _known_modules(model: nn.Module) -> bool:
    """True when every module of ``model`` is pni's (its architectures flatten with
    ``flatten``/``reshape``) or torch's own."""
    return all(type(m).__module__.split(".")[0] == "pni" or type(m).__module__.startswith("torch.nn.")
               for m in model.modules())


def _ambiguous(t: torch.Tensor) -> bool:
    """True when ``t`` is channels_last too (one channel, or 1x1 spatial: a 1x1 conv's weight
    is both); a model of such tensors only has no layout to change."""
    return t.is_contiguous(memory_format=torch.channels_last)


def _to_channels_last(module: nn.Module, args: tuple) -> tuple | None:
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 4:
        return None
    x = args[0].contiguous(memory_format=torch.channels_last)
    if x.requires_grad:
        try:
            x.register_hook(_standard_layout)
        except RuntimeError:  # inside a functional transform: its gradient keeps the layout
            pass
    return (x, *args[1:])


def _standard_layout(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous()
