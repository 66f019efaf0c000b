"""Training configuration and the TOML presets (``pni/presets/*.toml``) at three scales.

A preset file has a ``[base]`` table with the paper's settings and a ``[scales.<name>]``
table per scale (``smoke``: seconds, ``cpu``: about an hour on 2 cores, ``paper``: the
paper's settings) whose fields override the base.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

from .noise import GRANULARITIES, LOCATIONS

SCALES: tuple[str, ...] = ("smoke", "cpu", "paper")


class ConfigError(ValueError):
    """A bad configuration value, preset or scale; the message names it."""


@dataclass
class TrainConfig:
    """Everything a training run needs; every field can be set from a preset or a flag."""

    # model and noise (Sec. 3.1, Table 2)
    model: str = "resnet20"
    width: float = 1.0
    location: str | None = "W"          # None: no noise (vanilla model)
    granularity: str = "layer"
    init_alpha: float = 0.25
    fixed_alpha: float | None = None    # alpha frozen at this value (fixed-noise baseline)
    # data
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    train_subset: int | None = None     # first N training images
    eval_subset: int = 1000             # held-out images for the per-epoch metrics
    augment: str = "auto"               # auto | none | crop-flip
    # optimization (Sec. 4.1, DESIGN.md)
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-4          # never on alpha
    milestones: list[int] = field(default_factory=lambda: [80, 120])
    gamma: float = 0.1
    warmup_epochs: int = 0              # clean-only epochs before adversarial training
    # adversary (Eq. 10-12)
    adversarial: bool = True
    adv_noise: bool = True              # noise on while generating x-hat (Eq. 12)
    eps: float = 8 / 255
    step_size: float = 0.01
    steps: int = 7
    w_clean: float = 0.5
    w_adv: float = 0.5
    eval_steps: int | None = None       # PGD steps of the per-epoch metric (default: steps)
    # run
    seed: int = 0
    device: str = "cpu"
    channels_last: bool = True
    fold_bn: bool = True                # BatchNorm folded into convs for the attack passes
    progress: bool = True
    sync_bn: bool = False               # SyncBatchNorm across torchrun processes (CUDA only)

    def validate(self) -> TrainConfig:
        """Raises ConfigError naming the first bad field."""
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"config field {name}={getattr(self, name)!r}: expected {expected}")

        if self.location is not None and self.location not in LOCATIONS:
            raise bad("location", f"one of {', '.join(LOCATIONS)} or none")
        if self.granularity not in GRANULARITIES:
            raise bad("granularity", f"one of {', '.join(GRANULARITIES)}")
        for name in ("eps", "step_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise bad(name, "a number in (0, 1]")
        for name, minimum in (("steps", 0), ("epochs", 1), ("batch_size", 1), ("eval_subset", 0),
                              ("warmup_epochs", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise bad(name, f"an integer >= {minimum}")
        if self.eval_steps is not None and (not isinstance(self.eval_steps, int) or self.eval_steps < 0):
            raise bad("eval_steps", "an integer >= 0")
        if self.train_subset is not None and (not isinstance(self.train_subset, int) or self.train_subset < 1):
            raise bad("train_subset", "a positive integer")
        if not self.lr > 0:
            raise bad("lr", "a positive number")
        if self.weight_decay < 0 or self.w_clean < 0 or self.w_adv < 0:
            raise ConfigError("weight_decay, w_clean and w_adv must be >= 0")
        if self.augment not in ("auto", "none", "crop-flip"):
            raise bad("augment", "auto, none or crop-flip")
        if sorted(self.milestones) != list(self.milestones):
            raise bad("milestones", "increasing epoch numbers")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}; "
                              f"known fields: {', '.join(sorted(known))}")
        values = dict(values)
        if values.get("location") in ("none", "None", ""):
            values["location"] = None
        return cls(**values).validate()


def list_presets() -> list[str]:
    """Names of the presets shipped with pni."""
    folder = resources.files("pni") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_preset(name: str) -> dict[str, Any]:
    """The parsed TOML of a shipped preset."""
    names = list_presets()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; expected one of: {', '.join(names)}")
    text = (resources.files("pni") / "presets" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def preset_values(name: str, scale: str = "cpu") -> dict[str, Any]:
    """The field values of ``name`` at ``scale``: the base table with the scale's overrides."""
    preset = read_preset(name)
    scales = preset.get("scales", {})
    if scale not in scales:
        raise ConfigError(f"unknown scale {scale!r} for preset {name!r}; expected one of: "
                          f"{', '.join(s for s in SCALES if s in scales)}")
    values = dict(preset.get("base", {}))
    values.update(scales[scale])
    return values


def load_config(preset: str, scale: str = "cpu", **overrides: Any) -> TrainConfig:
    """A validated TrainConfig from a preset at a scale, with field overrides on top."""
    values = preset_values(preset, scale)
    values.update(overrides)
    return TrainConfig.from_dict(values)


def replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A validated copy of ``config`` with ``changes``."""
    return dataclasses.replace(config, **changes).validate()


FIELD_HELP: dict[str, str] = {
    "model": "architecture: resnet20|resnet32|resnet44|resnet56|resnet18|lenet5",
    "width": "width multiplier of the channels (Table 3: 1, 1.5, 2, 4)",
    "location": "noise location (Table 2): W, A-a, A-b, I, W+A-a, W+A-b, or none for no noise",
    "granularity": "one alpha per layer, per channel or per element",
    "init_alpha": "initial noise scale alpha (paper: 0.25)",
    "fixed_alpha": "freeze alpha at this value (fixed-noise baseline, not learned)",
    "dataset": "mnist, fashion-mnist, cifar10, imagefolder or mnist-sample (packaged)",
    "data_dir": "folder (or zip for imagefolder) holding the dataset; default $PNI_DATA or ~/.cache/pni",
    "download": "download the dataset if missing (cifar10)",
    "train_subset": "train on the first N training images only",
    "eval_subset": "test images for the per-epoch clean/PGD accuracy (0: none)",
    "augment": "auto (crop+flip for 32x32 RGB), none, or crop-flip",
    "epochs": "number of epochs",
    "batch_size": "batch size",
    "lr": "initial learning rate of SGD",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum (true/false)",
    "weight_decay": "weight decay on all parameters except alpha",
    "milestones": "epochs at which the learning rate is multiplied by gamma, comma separated",
    "gamma": "learning-rate factor at each milestone",
    "warmup_epochs": "clean-only epochs before adversarial training starts",
    "adversarial": "adversarial training (false: plain training, no adversary)",
    "adv_noise": "noise on while generating adversarial examples (Eq. 12); false is Table 1's middle column",
    "eps": "L-inf radius of the training adversary, in [0, 1] pixel units",
    "step_size": "PGD step size of the training adversary",
    "steps": "PGD steps of the training adversary",
    "w_clean": "weight of the clean loss (Eq. 11)",
    "w_adv": "weight of the adversarial loss (Eq. 11)",
    "eval_steps": "PGD steps of the per-epoch robust accuracy (default: steps)",
    "seed": "random seed (data order, augmentation, noise, attacks)",
    "device": "cpu, cuda, cuda:1, ...",
    "channels_last": "channels_last memory format for conv nets (faster on CPU)",
    "fold_bn": "fold BatchNorm into the convolutions during the eval-mode attack passes "
               "(the same function, faster)",
    "progress": "progress bars",
    "sync_bn": "under torchrun: SyncBatchNorm (batch statistics over the global batch, CUDA only)",
}
