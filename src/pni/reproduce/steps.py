"""The steps of a reproduction plan: scale-free specs (what a paper table asks for) and
their resolved form at a scale (a TrainConfig and a run key; He et al., CVPR 2019, Tables 1-7).

A spec says *what* the paper trained or measured (ResNet-20, PNI-W, adversarial training);
a scale (``pni.reproduce.scales``) turns it into concrete settings. Two specs that resolve
to the same settings get the same key, so a model shared by several tables trains once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..config import TrainConfig, declared_precision
from ..errors import PNIError


class ReproduceError(PNIError):
    """A user mistake with ``pni reproduce`` (unknown plan, bad --only, a folder holding
    another run); the message is one line."""


# Fields that change how fast a run goes, not what it computes: left out of the run key
# and of the "same config" check, so a run trained on a GPU is reused on a CPU.
RUNTIME_FIELDS = frozenset({"device", "progress", "channels_last", "fold_bn", "cuda_graphs",
                            "cudnn_benchmark"})


@dataclass(frozen=True)
class Train:
    """A training run as the paper describes it (Sec. 4.1); fields override the preset."""

    location: str | None = "W"          # Table 2 locations; None: no noise
    model: str = "resnet20"
    width: float = 1.0
    adversarial: bool = True            # False: Table 1 "vanilla training", Table 3 "no defense"
    adv_noise: bool = True              # False: Table 1 "without PNI in x-hat generation"
    preset: str = "cifar-resnet20"
    fixed_alpha: float | None = None    # Table 6 RSE-style row: noise scale frozen, not learned
    input_noise: float = 0.0            # Table 6 smoothing row: Gaussian input augmentation (Cohen)
    seed: int | None = None             # training seed (None: the preset's, 0); a row's extra seeds set it
    precision: str = "float32"          # TrainConfig.precision: explicit, so a run's key names what it computes

    def overrides(self) -> dict[str, Any]:
        values: dict[str, Any] = {"location": self.location, "model": self.model,
                                  "width": float(self.width), "adversarial": self.adversarial,
                                  "adv_noise": self.adv_noise}
        if self.fixed_alpha is not None:
            values["fixed_alpha"] = float(self.fixed_alpha)
        if self.input_noise:
            values["input_noise"] = float(self.input_noise)
        if self.seed is not None:
            values["seed"] = int(self.seed)
        values["precision"] = self.precision
        return values

    def describe(self) -> str:
        width = "" if self.width == 1 else f" x{self.width:g}"
        noise = f"PNI-{self.location}" if self.location else "no noise"
        if self.fixed_alpha is not None:
            noise += f" fixed alpha {self.fixed_alpha:g}"
        if self.input_noise:
            noise += f", input noise sigma {self.input_noise:g}"
        scheme = "AT" if self.adversarial else "plain"
        if self.adversarial and self.location and not self.adv_noise:
            scheme += " (noise off in x-hat)"
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"{self.model}{width} {noise} {scheme}{seed}"


@dataclass(frozen=True)
class Eval:
    """``pni eval`` of a run under a named protocol (``scales.EVAL_PROTOCOLS``)."""

    run: Train
    protocol: str = "paper"


@dataclass(frozen=True)
class Transfer:
    """Table 5 (left): the A => B / B => A matrix between two runs."""

    source: Train
    target: Train


@dataclass(frozen=True)
class Audit:
    """Table 7 / Fig. 3: ``pni audit`` of a run; ``items`` None: all."""

    run: Train
    items: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Alphas:
    """Fig. 2: the alpha-per-layer curve of a run, from its training log."""

    run: Train


@dataclass(frozen=True)
class Certify:
    """Table 6 (beyond the paper): ``pni certify`` of a run, randomized smoothing at ``sigma``
    (Cohen et al. 2019); certified accuracy at L2 radius 0.25 and 0.5."""

    run: Train
    sigma: float = 0.25


@dataclass(frozen=True)
class Substitute:
    """Table 5 (the paper's setup): the substitute-model black-box attack of Papernot et al.
    (2017) on a run: a substitute trained on the run's labels with Jacobian-based dataset
    augmentation, then FGSM and PGD transferred from it (``pni.attacks.substitute``)."""

    run: Train


Spec = Train | Eval | Transfer | Audit | Alphas | Certify | Substitute


def config_key_values(config: TrainConfig) -> dict[str, Any]:
    """The fields that define what a run computes (``RUNTIME_FIELDS`` left out). The precision
    (``declared_precision``: auto resolved on the config's device, an explicit one as it is)
    appears as the two booleans runs recorded before it (``tf32``, ``bf16``, both false) and,
    when it is not float32, by name too: every float32 run keeps the key it had before
    ``precision``, and another precision is another run. The plans' rows name their precision,
    so their keys do not depend on the device."""
    values = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS and k != "precision"}
    values["tf32"] = values["bf16"] = False
    precision = declared_precision(config.precision, config.device)
    if precision != "float32":
        values["precision"] = precision
    return values


def digest(values: Any, length: int = 8) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_key(config: TrainConfig) -> str:
    """A readable, unique folder name for a run: arch, width, noise, scheme, data, hash."""
    width = "" if config.width == 1 else f"x{config.width:g}"
    noise = config.location or "none"
    scheme = ("at" if config.adv_noise or not config.location else "at-xnoiseoff") \
        if config.adversarial else "plain"
    if config.fixed_alpha is not None:
        scheme += "-fixed"
    if config.input_noise:
        scheme += "-gauss"
    data = config.dataset.replace("imagefolder", "folder")
    return f"{config.model}{width}-{noise}-{scheme}-{data}-{digest(config_key_values(config))}"


@dataclass
class Step:
    """A resolved step: its kind, its key (the output folder), the keys of the runs it
    needs, and the settings recorded in the folder (equal settings -> the step is reused)."""

    kind: str                            # train | eval | transfer | audit | alphas | certify | substitute
    key: str
    needs: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    config: TrainConfig | None = None    # train steps only
    summary: str = ""
    track: str = ""
    rows: list[str] = field(default_factory=list)   # "plan:row" labels that use this step
