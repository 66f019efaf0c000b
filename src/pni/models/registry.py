"""The model registry: ``create_model(name, ...)`` for the architectures of the PNI paper,
parameter counts and the paper's layer labels (Table 1)."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from torch import nn

from ..data.stats import CIFAR10_STATS, MNIST_STATS  # the one place they live
from .lenet import LeNet5
from .normalize import Normalize
from .resnet18 import ResNet18
from .resnet_cifar import CifarResNet
from ..errors import PNIError

NormalizeArg = tuple[Sequence[float], Sequence[float]] | bool | None


class ModelError(PNIError):
    """A bad argument to ``create_model`` (unknown name, bad width, ...)."""


def _cifar_resnet(depth: int) -> Callable[..., nn.Module]:
    def build(num_classes: int, width: float, in_channels: int, normalize: Normalize | None) -> nn.Module:
        return CifarResNet(depth, num_classes, width, in_channels, normalize)
    build.__doc__ = f"CIFAR ResNet-{depth} (option-A shortcuts)."
    return build


# name -> (builder, default input channels, default normalization stats)
MODELS: dict[str, tuple[Callable[..., nn.Module], int, tuple]] = {
    "resnet20": (_cifar_resnet(20), 3, CIFAR10_STATS),
    "resnet32": (_cifar_resnet(32), 3, CIFAR10_STATS),
    "resnet44": (_cifar_resnet(44), 3, CIFAR10_STATS),
    "resnet56": (_cifar_resnet(56), 3, CIFAR10_STATS),
    "resnet18": (ResNet18, 3, CIFAR10_STATS),
    "lenet5": (LeNet5, 1, MNIST_STATS),
}


def _normalize_layer(name: str, normalize: NormalizeArg, in_channels: int,
                     default_stats: tuple) -> Normalize | None:
    if normalize is False:
        return None
    if normalize is None or normalize is True:
        mean, std = default_stats
        if len(mean) != in_channels:
            raise ModelError(
                f"model {name!r} with in_channels={in_channels} has no default normalization "
                f"(its default is for {len(mean)} channels): pass normalize=(mean, std) or False")
    else:
        mean, std = normalize
    if len(mean) != in_channels:
        raise ModelError(f"normalize mean has {len(mean)} values but the model has "
                         f"in_channels={in_channels}")
    return Normalize(mean, std)


def create_model(name: str, num_classes: int = 10, width: float = 1.0,
                 in_channels: int | None = None, normalize: NormalizeArg = None) -> nn.Module:
    """Builds a registered model taking images in [0, 1].

    ``normalize``: None uses the family's dataset statistics (CIFAR-10 for the ResNets,
    MNIST for LeNet-5), ``(mean, std)`` sets them, False leaves the input as it is.
    The model records ``arch``, ``num_classes``, ``width`` and ``input_shape`` (C, H, W).
    """
    key = name.lower().replace("-", "")
    if key not in MODELS:
        raise ModelError(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ModelError(f"model width must be a positive number, got {width!r}")
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ModelError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    builder, default_channels, stats = MODELS[key]
    channels = default_channels if in_channels is None else int(in_channels)
    if channels < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels!r}")
    model = builder(num_classes=num_classes, width=float(width), in_channels=channels,
                    normalize=_normalize_layer(key, normalize, channels, stats))
    model.arch = key
    model.num_classes = num_classes
    model.width = float(width)
    return model


def count_parameters(model: nn.Module, include_alphas: bool = False) -> int:
    """Trainable parameter count; alphas excluded unless asked (the paper's 'Capacity')."""
    from ..noise import alpha_parameters

    alpha_ids = set() if include_alphas else {id(p) for p in alpha_parameters(model)}
    return sum(p.numel() for p in model.parameters() if id(p) not in alpha_ids)


_BLOCK_CONV = re.compile(r"^stage(\d+)\.(\d+)\.(conv1|conv2|shortcut\.0)$")
_NUMBERED = re.compile(r"^(conv|fc)(\d+)$")


def layer_label(name: str) -> str:
    """The paper's label (Table 1) of a Conv/Linear layer named ``name``: for a ResNet stage
    s, block b, the first and second 3x3 convs are Conv{s}.{2b} and Conv{s}.{2b+1}; a
    projection shortcut is Conv{s}.{b}.sc; top-level ``convK`` / ``fcK`` (LeNet-5) become
    ConvK / FCK and ``fc`` FC. Other names stay as they are."""
    match = _BLOCK_CONV.match(name)
    numbered = _NUMBERED.match(name)
    if numbered:
        return f"{'Conv' if numbered[1] == 'conv' else 'FC'}{numbered[2]}"
    if name == "fc":
        return "FC"
    if match:
        stage, block, which = int(match[1]), int(match[2]), match[3]
        if which == "shortcut.0":
            return f"Conv{stage}.{block}.sc"
        return f"Conv{stage}.{2 * block + (which == 'conv2')}"
    return name


def layer_labels(model: nn.Module) -> dict[str, str]:
    """Maps the model's Conv/Linear layer names to the paper's labels (Table 1): Conv0,
    Conv1.0 ... Conv3.5, FC (``layer_label``)."""
    return {name: layer_label(name) for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.Linear))}
