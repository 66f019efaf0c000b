"""Pretrained models by name: ``pni.pretrained("lenet5-pni-w", scale="cpu")`` (this module: ``pni.models.hub``).

A small registry maps (name, scale) to a checkpoint committed under ``results/<scale>/``
of pni's repository, with the file's sha256. The benchmark card a checkpoint earned is
``results/cards/<name>-<scale>.json`` once it exists (``earned_card``: the card must name the
registered sha256). The file is checked before it is loaded (weights only): a
missing or altered file is a one-line ``PretrainedError``. ``hubconf.py`` at the
repository root exposes the same names to ``torch.hub.load``.

``pni.load_model`` takes a registered name or a checkpoint file (``pni.models.load_model(path)``
opens a checkpoint file by its path and also returns the checkpoint).
Paper-scale names are added here when those runs finish.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import PNIError
from ..files import file_sha256


class PretrainedError(PNIError):
    """An unknown name or scale, or a checkpoint file missing or not the registered one."""


@dataclass(frozen=True)
class Pretrained:
    """One registered checkpoint: its file (relative to the repository root), its sha256 and
    what it is."""

    path: str
    sha256: str
    description: str


def _cpu(folder: str, sha256: str, description: str) -> Pretrained:
    return Pretrained(f"results/cpu/{folder}/checkpoint.pt", sha256, description)


# (name, scale) -> checkpoint. The cpu scale: `pni reproduce all --scale cpu` (MNIST LeNet-5,
# CIFAR-10 ResNets at reduced budgets; docs/RESULTS.md).
REGISTRY: dict[tuple[str, str], Pretrained] = {
    ("lenet5-plain", "cpu"): _cpu("lenet5-none-plain-mnist-c90574fe", "3ab30ffbac0a14ae7cbc68f60bc2068e88aa1a33fba9d7146ed749793d9ed903", "LeNet-5, MNIST, no noise, clean training"),
    ("lenet5-vanilla-at", "cpu"): _cpu("lenet5-none-at-mnist-b590ab06", "f18ff60e39e85cb88607355db995f88e0f0bbca7017e086c5e1142efb6806948", "LeNet-5, MNIST, no noise, PGD adversarial training"),
    ("lenet5-pni-w", "cpu"): _cpu("lenet5-W-at-mnist-501bbc46", "5a54d4a3c212c62246f69a276adf8ad201077c4f1c68d78d5ac2157f19f69660", "LeNet-5, MNIST, PNI-W, adversarial training"),
    ("lenet5-pni-w-plain", "cpu"): _cpu("lenet5-W-plain-mnist-7cf5d87e", "f99e8a776c0b63e609ef7d91a534a39ebb77cdff9dee5ac5f245192f0c0bed4a", "LeNet-5, MNIST, PNI-W, clean training"),
    ("lenet5-pni-a-a", "cpu"): _cpu("lenet5-A-a-at-mnist-42c8b074", "265b93d7b43e8f7d2756d2d7dd7978d758c62ed5bfeb440922c845720fadd2e7", "LeNet-5, MNIST, PNI-A-a, adversarial training"),
    ("lenet5-pni-a-b", "cpu"): _cpu("lenet5-A-b-at-mnist-967e3dff", "b73349098635bda5854695372f6cb87a8c109f4fce0ab4e92993539518e182ed", "LeNet-5, MNIST, PNI-A-b, adversarial training"),
    ("lenet5-pni-i", "cpu"): _cpu("lenet5-I-at-mnist-b42f35c6", "e2c171077a28b9a309d4ac2b1b7779a4fa38932344852a35d87db978457968a4", "LeNet-5, MNIST, PNI-I, adversarial training"),
    ("lenet5-pni-w+a-a", "cpu"): _cpu("lenet5-W+A-a-at-mnist-d47f38c5", "0ad8ecc8eea60a74feca7780b4d1cb2e8e935222a356145942ba855734f22286", "LeNet-5, MNIST, PNI-W+A-a, adversarial training"),
    ("lenet5-pni-w+a-b", "cpu"): _cpu("lenet5-W+A-b-at-mnist-67cce635", "f378a42790175dfcc483711b8a39f15941e45ba871de2c1f733082479c92af45", "LeNet-5, MNIST, PNI-W+A-b, adversarial training"),
    ("resnet20-plain", "cpu"): _cpu("resnet20-none-plain-folder-07762833", "d1d39c8473b250f36eaa40c5ce825fe74b9a09cb6c31e6fe9a03d578dde2d1cb", "ResNet-20, CIFAR-10, no noise, clean training"),
    ("resnet20-vanilla-at", "cpu"): _cpu("resnet20-none-at-folder-801521d2", "a5bdc5d82851181696dcdef41b26f058e41ed3c0376346ce5cc773176d4116e7", "ResNet-20, CIFAR-10, no noise, PGD adversarial training"),
    ("resnet20-pni-w", "cpu"): _cpu("resnet20-W-at-folder-f798fcd0", "7982ce7e31651351adfe7d0eaac0f8573609906d9157b8a25df52dcf4b9b838a", "ResNet-20, CIFAR-10, PNI-W, adversarial training"),
    ("resnet20-pni-a-a", "cpu"): _cpu("resnet20-A-a-at-folder-abcc8161", "ad85ee0cf015d7008ea682a5e9f4d541ee2cb83aec01bf006e3d29ffda6ff833", "ResNet-20, CIFAR-10, PNI-A-a, adversarial training"),
    ("resnet20-pni-a-b", "cpu"): _cpu("resnet20-A-b-at-folder-5639f232", "fe1a72d9f67414b44d8e3a6a3a907f927467270d3d5286e3598a84065695e4d6", "ResNet-20, CIFAR-10, PNI-A-b, adversarial training"),
    ("resnet20-pni-i", "cpu"): _cpu("resnet20-I-at-folder-b8f2e335", "e58b67dfaf89b36ac15a4f7ab9188782b68170c63402db5b6b30b8909652a916", "ResNet-20, CIFAR-10, PNI-I, adversarial training"),
    ("resnet20-pni-w+a-a", "cpu"): _cpu("resnet20-W+A-a-at-folder-507de596", "7cf23e69782acb1852cf66d9792a86fda229584324ca949a606efae59525ee93", "ResNet-20, CIFAR-10, PNI-W+A-a, adversarial training"),
    ("resnet20-pni-w+a-b", "cpu"): _cpu("resnet20-W+A-b-at-folder-f2ec4d45", "7680f2a8be195056db5f575b0bff44ad322e1e785e24d587f65ddef2f0726e85", "ResNet-20, CIFAR-10, PNI-W+A-b, adversarial training"),
    ("resnet32-vanilla-at", "cpu"): _cpu("resnet32-none-at-folder-0843939e", "c2c16fa37b82f52771459b6eb81e0a0f5fe5fbfffeb8dae6b9accfcc14e39f32", "ResNet-32, CIFAR-10, no noise, PGD adversarial training"),
    ("resnet32-pni-w", "cpu"): _cpu("resnet32-W-at-folder-debbb3fa", "4b0b2b862f19576fcce9d385644bd3f697e87a581a76b10c30878d255534ab2b", "ResNet-32, CIFAR-10, PNI-W, adversarial training"),
}


def default_root() -> Path:
    """``$PNI_PRETRAINED_ROOT`` if set, else the repository this package runs from."""
    env = os.environ.get("PNI_PRETRAINED_ROOT")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[3]


def pretrained_names(scale: str | None = None) -> list[str]:
    """The registered names (of one ``scale``)."""
    return sorted({name for name, s in REGISTRY if scale is None or s == scale})


def pretrained_entry(name: str, scale: str = "cpu") -> Pretrained:
    """The registry entry of ``name`` at ``scale``; an unknown one is a one-line error."""
    key = (str(name).lower(), scale)
    if key not in REGISTRY:
        scales = sorted({s for n, s in REGISTRY if n == key[0]})
        if scales:
            raise PretrainedError(f"pretrained {name!r} has no {scale!r} checkpoint; scales: {', '.join(scales)}")
        raise PretrainedError(f"unknown pretrained model {name!r}; expected one of: {', '.join(pretrained_names())}")
    return REGISTRY[key]


def verified_path(name: str, scale: str = "cpu", root: str | os.PathLike | None = None) -> Path:
    """The checkpoint file of ``name`` once its sha256 is the registered one."""
    entry = pretrained_entry(name, scale)
    path = Path(root or default_root()) / entry.path
    if not path.is_file():
        raise PretrainedError(f"pretrained {name!r} ({scale}): {entry.path} is missing under {path.parents[3]} "
                              f"(a checkout of pni's repository has it; or set PNI_PRETRAINED_ROOT)")
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise PretrainedError(f"pretrained {name!r} ({scale}): {path} has sha256 {digest[:16]}..., not the "
                              f"registered {entry.sha256[:16]}...: the file was altered or replaced")
    return path


def card_path(name: str, scale: str = "cpu") -> str:
    """Where the benchmark card of ``name`` at ``scale`` lives, relative to the repository root
    (``scripts/make_cards.sh`` writes it there)."""
    pretrained_entry(name, scale)
    return f"results/cards/{str(name).lower()}-{scale}.json"


def earned_card(name: str, scale: str = "cpu", root: str | os.PathLike | None = None) -> Path | None:
    """The benchmark card ``name`` earned at ``scale`` (None: none yet); a card there that
    judged other weights than the registered file is a one-line ``PretrainedError``."""
    from ..benchmark.card import read_card

    path = Path(root or default_root()) / card_path(name, scale)
    if not path.is_file():
        return None
    judged = read_card(path)["model"]["weights_sha256"]
    if judged != pretrained_entry(name, scale).sha256:
        raise PretrainedError(f"{path} judged weights with sha256 {str(judged)[:16]}..., not the registered "
                              f"{pretrained_entry(name, scale).sha256[:16]}... of {name!r} ({scale}): remake the card")
    return path


def pretrained(name: str, scale: str = "cpu", device: str | torch.device = "cpu",
               root: str | os.PathLike | None = None, with_checkpoint: bool = False) -> Any:
    """The pretrained model ``name`` at ``scale`` (noise on, eval mode), its file verified.

    Args:
        name: a registered name (``pretrained_names()``), e.g. "lenet5-pni-w".
        scale: "cpu" (the committed reproduction; paper-scale names come with those runs).
        device: where the model goes (default "cpu").
        root: the repository holding ``results/`` (default: ``default_root()``).
        with_checkpoint: also return the checkpoint dict (config, training log entries).

    Returns:
        nn.Module: the model, or ``(model, checkpoint)`` with ``with_checkpoint``.

    Example:
        >>> import pni
        >>> model = pni.pretrained("lenet5-pni-w", scale="cpu")
        >>> type(model).__name__, pni.is_injected(model)
        ('LeNet5', True)

    Raises:
        PretrainedError: an unknown name or scale, a missing file, a sha256 that differs.
    """
    from .saved import load_model

    path = verified_path(name, scale, root)
    model, checkpoint = load_model(path, device=device)
    model.eval()
    return (model, checkpoint) if with_checkpoint else model


def load_model(name_or_path: str | os.PathLike, scale: str = "cpu", device: str | torch.device = "cpu") -> Any:
    """A model ready to judge, by registered name or by file: ``pni.load_model("resnet20-pni-w",
    scale="cpu")`` is ``pretrained`` (its file sha256-checked); the path of a ``pni train``
    checkpoint is that model (``pni.models.load_model(path)``, which also returns the
    checkpoint).

    Args:
        name_or_path: a registered name (``pretrained_names()``) or a checkpoint file.
        scale: the registered name's scale, "cpu" (default).
        device: where the model goes (default "cpu").

    Returns:
        nn.Module: the model, in eval mode, its noise on.

    Example:
        >>> import pni
        >>> model = pni.load_model("lenet5-pni-w", scale="cpu")
        >>> type(model).__name__, pni.is_injected(model), model.training
        ('LeNet5', True, False)

    Raises:
        PretrainedError: neither a registered name nor a file; a registered name's errors
            (``pretrained``). A file that is not a pni checkpoint: ``CheckpointError``.
    """
    from .saved import load_model as load_checkpoint_model

    if str(name_or_path).lower() in pretrained_names():
        return pretrained(str(name_or_path), scale=scale, device=device)
    if not Path(name_or_path).is_file():
        raise PretrainedError(f"{str(name_or_path)!r} is neither a pretrained name ({', '.join(pretrained_names())}) "
                              f"nor a checkpoint file")
    model, _ = load_checkpoint_model(name_or_path, device=device)
    return model.eval()
