"""Training configuration and the TOML presets (``pni/presets/*.toml``) at three scales.

A preset file has a ``[base]`` table with the paper's settings and a ``[scales.<name>]``
table per scale (``smoke``: seconds, ``cpu``: about an hour on 2 cores, ``paper``: the
paper's settings) whose fields override the base.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from .noise import GRANULARITIES, LOCATIONS
from .errors import PNIError, did_you_mean
from .settings import field_help, is_fraction, option

SCALES: tuple[str, ...] = ("smoke", "cpu", "paper")


class ConfigError(PNIError):
    """A bad configuration value, preset or scale; the message names it."""


# --- typed checks, driven by the dataclass type hints ------------------------------------

def _describe(hint: Any) -> str:
    """``hint`` in words, for an error message."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if typing.get_origin(hint) is list:
        item = _describe(args[0]).removeprefix("an ").removeprefix("a ") if args else "value"
        return f"a list of {item}s"
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return {bool: "true or false (a boolean)", int: "an integer", float: "a finite number",
            str: "a string", type(None): "none"}.get(hint, getattr(hint, "__name__", str(hint)))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint``: bool is never an int, numbers are finite."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_error(name: str, value: Any, hint: Any) -> ConfigError:
    if isinstance(value, float) and not math.isfinite(value):
        got = ""
    elif isinstance(value, list):
        got = f", got a list of {', '.join(sorted({type(v).__name__ for v in value}))}"
    else:
        got = f", got {type(value).__name__}"
    return ConfigError(f"config field {name}={value!r}: expected {_describe(hint)}{got}")


def _as_floats(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with integers given to float fields (``lr = 1`` in TOML) made floats."""
    hints = field_types()
    return {k: float(v) if type(v) is int and hints.get(k) in (float, float | None) else v
            for k, v in values.items()}


@functools.cache
def field_types() -> dict[str, Any]:
    """Every TrainConfig field and its type hint (resolved)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def check_types(values: Mapping[str, Any], source: str | None = None,
                allow_unknown: bool = False) -> None:
    """Raises ConfigError (prefixed with ``source``) for an unknown field or a value whose
    type is not the field's."""
    hints = field_types()
    try:
        if not allow_unknown:
            _check_known(values, hints)
        for name, value in values.items():
            if name in hints and not _matches(value, hints[name]):
                raise _type_error(name, value, hints[name])
    except ConfigError as error:
        raise _located(error, source) from None


def _check_known(values: Mapping[str, Any], hints: Mapping[str, Any]) -> None:
    unknown = sorted(map(str, set(values) - set(hints)))
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}; "
                          f"known fields: {', '.join(sorted(hints))}")


def _located(error: ConfigError, source: str | None) -> ConfigError:
    return ConfigError(f"{source}: {error}") if source else error


@dataclass
class TrainConfig:
    """Everything a training run needs; every field can be set from a preset or a flag."""

    # model and noise (Sec. 3.1, Table 2)
    model: str = option("resnet20", 'architecture: resnet20|resnet32|resnet44|resnet56|resnet18|lenet5')
    width: float = option(1.0, 'width multiplier of the channels (Table 3: 1, 1.5, 2, 4)')
    location: str | None = option("W", 'noise location (Table 2): W, A-a, A-b, I, W+A-a, W+A-b, or none '
                                       'for no noise')
    granularity: str = option("layer", 'one alpha per layer, per channel or per element')
    init_alpha: float = option(0.25, 'initial noise scale alpha (paper: 0.25)')
    fixed_alpha: float | None = option(None, 'freeze alpha at this value (fixed-noise baseline, not '
                                             'learned)')
    input_noise: float = option(0.0, 'std of Gaussian noise added to every training input in [0, 1] '
                                     'pixel units (randomized-smoothing training, Cohen et al. 2019; 0: '
                                     'none)')
    # data
    dataset: str = option("cifar10", 'mnist, fashion-mnist, cifar10, imagefolder or mnist-sample '
                                     '(packaged)')
    data_dir: str | None = option(None, 'folder (or zip for imagefolder) holding the dataset; default '
                                        '$PNI_DATA or ~/.cache/pni (pni train stores it resolved: an '
                                        'absolute path in config.json)')
    download: bool = option(False, 'download the dataset if missing (cifar10, mnist, fashion-mnist; checksum-verified)')
    train_subset: int | None = option(None, 'train on a class-stratified sample of N training images '
                                            '(the same for the same N)')
    eval_subset: int = option(1000, 'test images for the per-epoch clean/PGD accuracy (0: none)')
    augment: str = option("auto", 'auto (crop+flip for 32x32 RGB), none, or crop-flip')
    # optimization (Sec. 4.1, DESIGN.md)
    epochs: int = option(160, 'number of epochs')
    batch_size: int = option(128, 'batch size')
    lr: float = option(0.1, 'initial learning rate of SGD')
    momentum: float = option(0.9, 'SGD momentum')
    nesterov: bool = option(True, 'Nesterov momentum (true/false)')
    weight_decay: float = option(3e-4, 'weight decay on all parameters except alpha')
    milestones: list[int] = option(help='epochs at which the learning rate is multiplied by gamma, '
                                        'comma separated', factory=lambda: [80, 120])
    gamma: float = option(0.1, 'learning-rate factor at each milestone')
    warmup_epochs: int = option(0, 'clean-only epochs before adversarial training starts')
    # adversary (Eq. 10-12)
    adversarial: bool = option(True, 'adversarial training (false: plain training, no adversary)')
    adv_noise: bool = option(True, 'noise on while generating adversarial examples (Eq. 12); false is '
                                   "Table 1's middle column")
    eps: float = option(8 / 255, 'L-inf radius of the training adversary, in [0, 1] pixel units')
    step_size: float = option(0.01, 'PGD step size of the training adversary')
    steps: int = option(7, 'PGD steps of the training adversary')
    w_clean: float = option(0.5, 'weight of the clean loss (Eq. 11)')
    w_adv: float = option(0.5, 'weight of the adversarial loss (Eq. 11)')
    eval_steps: int | None = option(None, 'PGD steps of the per-epoch robust accuracy (default: steps)')
    # run
    seed: int = option(0, 'random seed (data order, augmentation, noise, attacks)')
    device: str = option("cpu", 'cpu, cuda, cuda:1, ...')
    channels_last: bool = option(True, 'channels_last memory format for conv nets (faster on CPU)')
    fold_bn: bool = option(True, 'fold BatchNorm into the convolutions during the eval-mode attack '
                                 'passes (the same function, faster)')
    progress: bool = option(True, 'progress bars')
    sync_bn: bool = option(False, 'under torchrun: SyncBatchNorm (batch statistics over the global '
                                  'batch, CUDA only)')
    # CUDA speed options (pni.training.cuda_graphs; benchmarks/gpu.py measures each)
    cuda_graphs: bool = option(True, 'on CUDA, record the whole training step once and replay it per '
                                     'batch (the same function, several times faster for small models)')
    precision: str = option("auto", 'auto (PyTorch\'s defaults: tf32 on CUDA, float32 elsewhere), tf32 '
                                    '(TF32 cuDNN convolutions, float32 matmuls: PyTorch\'s own CUDA '
                                    'default), float32 (strict: no TF32) or bf16 (autocast for the '
                                    'training and attack passes); config.json records it, auto resolved '
                                    'on the device (tf32 on a CPU computes float32: there is no TF32)')
    compile: bool = option(False, 'torch.compile the training forwards (turns cuda_graphs off)')
    cudnn_benchmark: bool = option(False, 'cuDNN autotuning on CUDA (off: no faster for the graphed '
                                          'ResNet-20 step on an H100, 38.1 vs 38.1 ms)')

    def validate(self) -> TrainConfig:
        """Checks every field's type (from the type hints) and range; raises ConfigError
        naming the first bad field, its value and what was expected."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        check_types(values)
        for name, (ok, expected) in _RANGES.items():
            value = values.get(name)
            if value is not None and not ok(value):
                raise ConfigError(f"config field {name}={value!r}: expected {expected}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("config field nesterov=True: needs momentum > 0 (momentum=0); "
                              "set nesterov false or a momentum")
        _check_schedule(self.lr, self.gamma, len(self.milestones), self.weight_decay)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | None = None) -> TrainConfig:
        """A validated config from field values (a preset's, ``config.json``'s, flags');
        errors are prefixed with ``source`` (a file name) when given."""
        if not isinstance(values, Mapping):
            raise _located(ConfigError(f"expected a table of config fields, got "
                                       f"{type(values).__name__}"), source)
        values = dict(values)
        values.pop("code", None)   # the code that wrote a config.json (pni.provenance): not a field
        values.pop("data_location", None)   # where its data_dir pointed (pni.runs.data_location): not a field
        values = migrate_precision(values)
        if values.get("location") in ("none", "None", ""):
            values["location"] = None
        check_types(values, source)
        try:
            return cls(**_as_floats(values)).validate()
        except ConfigError as error:
            raise _located(error, source) from None


DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")
PRECISIONS: tuple[str, ...] = ("auto", "tf32", "float32", "bf16")


def migrate_precision(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config written before ``precision`` (two booleans, ``tf32`` and ``bf16``, both off by
    default: strict float32 on CUDA) as one with ``precision``: bf16, tf32 or float32."""
    values = dict(values)
    if "tf32" in values or "bf16" in values:
        tf32, bf16 = values.pop("tf32", False), values.pop("bf16", False)
        if "precision" not in values:
            values["precision"] = "bf16" if bf16 is True else "tf32" if tf32 is True else "float32"
    return values


def declared_precision(precision: str, device: str) -> str:
    """The precision a run declares (config.json, run keys): ``auto`` resolved on ``device``
    (tf32 on CUDA, float32 elsewhere), an explicit value as it is (tf32 on a CPU stays tf32:
    the same run as on a GPU, as a run's device is not part of what it is)."""
    return effective_precision(precision, device) if precision == "auto" else precision


def effective_precision(precision: str, device: str) -> str:
    """The precision a run computes in on ``device``: ``auto`` is tf32 on CUDA (PyTorch's
    default, ``torch.backends.cudnn.allow_tf32``) and float32 elsewhere; tf32 off CUDA is
    float32 (there is no TF32 there); bf16 autocasts on every device."""
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        return "tf32" if on_cuda else "float32"
    if precision == "tf32" and not on_cuda:
        return "float32"
    return precision


def _device_syntax(text: str) -> str | None:
    """Why ``text`` is not a device string pni trains or evaluates on, or None."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        return "not a device"
    return None if device.type in DEVICE_TYPES else f"device type {device.type!r} is not supported"


def check_device(text: str, name: str = "device") -> Any:
    """The ``torch.device`` of ``text`` when this machine has it; else a one-line
    ConfigError naming ``name`` (a flag or field), the value and what is available."""
    import torch

    expected = "cpu, cuda, cuda:N or mps"
    problem = _device_syntax(text) if isinstance(text, str) else "not a string"
    if problem is not None:
        raise ConfigError(f"{name}={text!r}: {problem}; expected {expected}")
    device = torch.device(text)
    if device.type == "cuda":
        if torch.version.cuda is None and not torch.cuda.is_available():
            raise ConfigError(f"{name}={text!r}: this PyTorch build has no CUDA support; use cpu "
                              f"(or install a CUDA build of PyTorch)")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{name}={text!r}: no CUDA GPU is available on this machine; use cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{name}={text!r}: this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{name}={text!r}: MPS (Apple GPU) is not available on this machine; use cpu")
    return device


def _increasing_epochs(values: list[int]) -> bool:
    return all(v >= 1 for v in values) and sorted(values) == list(values)


# Field -> (test of a non-None value of the right type, what is expected). Types are checked
# from the type hints first (check_types), so these only bound values.
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "location": (lambda v: v in LOCATIONS, f"one of {', '.join(LOCATIONS)} or none"),
    "granularity": (lambda v: v in GRANULARITIES, f"one of {', '.join(GRANULARITIES)}"),
    "augment": (lambda v: v in ("auto", "none", "crop-flip"), "auto, none or crop-flip"),
    "precision": (lambda v: v in PRECISIONS, "auto, tf32, float32 or bf16"),
    "width": (lambda v: v > 0, "a positive number"),
    "input_noise": (lambda v: v >= 0, "a number >= 0 (0: no input noise)"),
    "eps": (is_fraction, "a number in (0, 1]"),
    "step_size": (is_fraction, "a number in (0, 1]"),
    "steps": (lambda v: v >= 0, "an integer >= 0"),
    "eval_steps": (lambda v: v >= 0, "an integer >= 0"),
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "eval_subset": (lambda v: v >= 0, "an integer >= 0"),
    "train_subset": (lambda v: v >= 1, "a positive integer"),
    "warmup_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "lr": (lambda v: v > 0, "a positive number"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "gamma": (lambda v: v > 0, "a positive number"),
    "milestones": (_increasing_epochs, "increasing epoch numbers >= 1"),
    "w_clean": (lambda v: v >= 0, "a number >= 0"),
    "w_adv": (lambda v: v >= 0, "a number >= 0"),
    "seed": (lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)"),
    "device": (lambda v: _device_syntax(v) is None, "a device: cpu, cuda, cuda:N or mps"),
}


FLOAT32_MAX = 3.4028234663852886e38  # the optimizer computes in the parameters' float32


def _check_schedule(lr: float, gamma: float, milestones: int, weight_decay: float) -> None:
    """ConfigError unless every learning rate of the schedule (``lr * gamma**k``, k up to the
    number of milestones) and the weight decay fit in float32 (else torch's "value cannot be
    converted to type float without overflow" in the middle of training)."""
    import math

    peak = math.log10(lr) + milestones * max(math.log10(gamma), 0.0)
    if peak > math.log10(FLOAT32_MAX):
        name, value = ("gamma", gamma) if math.log10(lr) <= math.log10(FLOAT32_MAX) else ("lr", lr)
        raise ConfigError(f"config field {name}={value!r}: the learning rate would reach 1e{peak:.0f} "
                          f"(lr={lr!r} x gamma={gamma!r} at {milestones} milestone(s)), above the largest "
                          f"float32 ({FLOAT32_MAX:.3g}) the optimizer computes in; expected a schedule "
                          f"that stays below it")
    if weight_decay > FLOAT32_MAX:
        raise ConfigError(f"config field weight_decay={weight_decay!r}: expected a number below the largest "
                          f"float32 ({FLOAT32_MAX:.3g})")


def list_presets() -> list[str]:
    """Names of the presets shipped with pni."""
    folder = resources.files("pni") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_file(name: str) -> Any:
    """The file of the shipped preset ``name``, or ``name`` itself when it is a path to a
    ``.toml`` file (a user's own preset)."""
    names = list_presets()
    if name in names:
        return resources.files("pni") / "presets" / f"{name}.toml"
    if name.endswith(".toml") or os.sep in name:
        return Path(name)
    raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, names)}; expected one of: {', '.join(names)}, "
                      f"or the path of a .toml file")


def read_preset(name: str) -> dict[str, Any]:
    """The parsed, type-checked TOML of a preset (see ``preset_file``); errors name the file."""
    file = preset_file(name)
    try:
        preset = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"preset {file}: malformed TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"cannot read preset {file}: {reason}") from None
    _check_preset(preset, f"preset {file}")
    return preset


def _check_preset(preset: dict[str, Any], source: str) -> None:
    """A ``[base]`` table and ``[scales.<name>]`` tables of known fields of the right types."""
    unknown = sorted(set(preset) - {"base", "scales"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}; "
                          f"expected [base] and [scales.<name>]")
    scales = preset.get("scales", {})
    if not isinstance(scales, dict):
        raise ConfigError(f"{source}: 'scales' must hold [scales.<name>] tables")
    tables = {"[base]": preset.get("base", {})}
    tables.update({f"[scales.{k}]": v for k, v in scales.items()})
    for title, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source} {title}: expected a table of config fields, "
                              f"got {type(table).__name__}")
        check_types(table, f"{source} {title}")


def preset_values(name: str, scale: str = "cpu") -> dict[str, Any]:
    """The field values of ``name`` at ``scale``: the base table with the scale's overrides."""
    preset = read_preset(name)
    scales = preset.get("scales", {})
    if scale not in scales:
        raise ConfigError(f"unknown scale {scale!r} for preset {name!r}; expected one of: "
                          f"{', '.join(s for s in SCALES if s in scales) or '(none defined)'}")
    values = dict(preset.get("base", {}))
    values.update(scales[scale])
    return values


def load_config(preset: str, scale: str = "cpu", **overrides: Any) -> TrainConfig:
    """A validated TrainConfig from a preset at a scale, with field overrides on top."""
    values = preset_values(preset, scale)
    values.update(overrides)
    return TrainConfig.from_dict(values)


def read_config(path: str | os.PathLike) -> TrainConfig:
    """The validated TrainConfig of a JSON file (a run's ``config.json``); errors name the file."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: malformed JSON: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    return TrainConfig.from_dict(values, source=str(path))


def replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A validated copy of ``config`` with ``changes``."""
    check_types(changes)
    return dataclasses.replace(config, **changes).validate()


FIELD_HELP: dict[str, str] = field_help(TrainConfig)  # derived from the fields' metadata
