"""Certificates against attacks: a cross-check of both (issue 13, item 3; audit item 8).

On every image certified with class ``c`` at L2 radius ``R`` (``pni.certify``), the strong
C&W-L2 and an L2 PGD with EOT attack the smoothed classifier (``SmoothedSoftmax``: the mean
softmax over Gaussian draws, the model's own noise drawn afresh at every pass), with ``c`` as
the label. Each adversarial example is judged by Cohen's PREDICT. An example with
``||x_adv - x||_2 < R`` that PREDICT assigns a class other than ``c`` (not an abstention)
contradicts Theorem 1: either the certificate is wrong (a bug in sampling, bounds or radius)
or the attack's example is misjudged. With both correct, it happens to an image with
probability at most ``alpha_certify + alpha_predict`` (Cohen's Theorem 1 and Prop. 1), which
the result reports as the number expected by chance.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks.cw import cw_l2_profile
from ..attacks.l2 import SmoothedSoftmax, pgd_l2
from .smoothing import ABSTAIN, Certification, CertifyError, check_count, image_tensors, predict
from ..data import Dataset
from ..seeding import mix_seed
from ..models.modes import eval_mode, model_device

CHECK_ATTACKS: tuple[str, ...] = ("cw", "pgd-l2")


@dataclass
class CertificateCheck:
    """Per checked image (``indices`` into the data): the certified ``classes`` and ``radii``;
    per attack: the adversarial examples' L2 norms (``l2``) and PREDICT's classes on them
    (``judged``, -1: abstain). Its report: ``pni.reports.certify.certificate_check_markdown``."""

    indices: Tensor
    classes: Tensor
    radii: Tensor
    l2: dict[str, Tensor] = field(default_factory=dict)
    judged: dict[str, Tensor] = field(default_factory=dict)
    alpha: float = 0.001
    predict_alpha: float = 0.001
    settings: dict[str, Any] = field(default_factory=dict)

    def within(self, attack: str) -> Tensor:
        """Adversarial examples strictly inside the certified radius."""
        return self.l2[attack] < self.radii

    def violations(self, attack: str) -> Tensor:
        """Inside the radius, and PREDICT names another class: a contradiction."""
        judged = self.judged[attack]
        return self.within(attack) & (judged != self.classes) & (judged != ABSTAIN)

    @property
    def ok(self) -> bool:
        return not any(bool(self.violations(a).any()) for a in self.l2)

    @property
    def expected_by_chance(self) -> float:
        """Upper bound on the expected contradictions per attack when nothing is wrong."""
        return (self.alpha + self.predict_alpha) * len(self.indices)

    def records(self) -> list[dict[str, Any]]:
        """One dict per contradiction: image, attack, L2, radius, certified and judged class."""
        out = []
        for attack in self.l2:
            for i in self.violations(attack).nonzero().flatten().tolist():
                out.append({"image": int(self.indices[i]), "attack": attack, "l2": float(self.l2[attack][i]),
                            "radius": float(self.radii[i]), "certified_class": int(self.classes[i]),
                            "predicted_class": int(self.judged[attack][i])})
        return out

    def counts(self, attack: str) -> dict[str, int]:
        inside = self.within(attack)
        return {"images": len(self.indices), "within_radius": int(inside.sum()),
                "violations": int(self.violations(attack).sum()),
                "abstained_within_radius": int((inside & (self.judged[attack] == ABSTAIN)).sum())}

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "expected_by_chance_per_attack": self.expected_by_chance,
                "alpha_certify": self.alpha, "alpha_predict": self.predict_alpha, "settings": self.settings,
                "attacks": {a: self.counts(a) for a in self.l2}, "violations": self.records(),
                "per_image": {"index": self.indices.tolist(), "class": self.classes.tolist(),
                              "radius": self.radii.tolist(),
                              **{f"l2_{a}": self.l2[a].tolist() for a in self.l2},
                              **{f"predict_{a}": self.judged[a].tolist() for a in self.l2}}}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _attack(name: str, smoothed: SmoothedSoftmax, x: Tensor, c: Tensor, radii: Tensor,
            options: dict[str, Any]) -> Tensor:
    """The adversarial examples of one attack on one batch, labels = the certified classes."""
    if name == "cw":
        overrides = {"eot": options["cw_eot"], **options["cw_options"]}
        return cw_l2_profile(smoothed, x, c, options["cw_profile"], **overrides).x_adv
    if name == "pgd-l2":
        eps = (radii * (1 - options["margin"])).to(x.device, x.dtype)
        return pgd_l2(smoothed, x, c, eps, steps=options["pgd_steps"], eot=options["pgd_eot"])
    raise CertifyError(f"unknown attack {name!r} for the certificate check; expected one of: "
                       f"{', '.join(CHECK_ATTACKS)}")


def cross_check_certificates(model: nn.Module, data: Dataset | tuple[Tensor, Tensor],
                             certification: Certification, attacks: Sequence[str] = CHECK_ATTACKS, *,
                             min_radius: float = 0.0, margin: float = 1e-3, cw_profile: str = "strong",
                             cw_eot: int = 1, cw_options: dict[str, Any] | None = None,
                             pgd_steps: int = 100, pgd_eot: int = 4, samples: int = 16,
                             predict_n: int = 1000, predict_alpha: float = 0.001,
                             attack_batch: int = 64, batch_size: int = 1000, seed: int = 0,
                             max_images: int | None = None) -> CertificateCheck:
    """Attacks every image of ``data`` that ``certification`` certified at a radius >= ``min_radius``
    (the same data, in the same order) and judges the examples with PREDICT (module docstring);
    ``max_images``: only the first that many of those images.

    C&W-L2 runs ``cw_profile`` ("strong": 1000 Adam steps, 9 binary-search steps; ``cw_options``
    override it) with ``cw_eot`` passes per gradient; L2 PGD takes ``pgd_steps`` steps of EOT
    over ``pgd_eot`` passes inside the ball of radius ``R * (1 - margin)`` (``R``: the image's own
    certified radius). Every pass averages ``samples`` Gaussian draws. The model runs in eval
    mode (restored after), noise switch as it is; seeded, the caller's random state untouched.
    """
    x, labels = image_tensors(data)
    if len(labels) != len(certification.labels) or not torch.equal(labels, certification.labels):
        raise CertifyError(f"data ({len(labels)} images) is not the data certified "
                           f"({len(certification.labels)} images, other labels)")
    for name in attacks:
        if name not in CHECK_ATTACKS:
            raise CertifyError(f"unknown attack {name!r}; expected some of: {', '.join(CHECK_ATTACKS)}")
    if not (isinstance(min_radius, (int, float)) and min_radius >= 0):
        raise CertifyError(f"min_radius must be a number >= 0, got {min_radius!r}")
    if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
        raise CertifyError(f"margin must be a number in [0, 1) (PGD's ball: radius * (1 - margin)), got {margin!r}")
    batch = check_count(attack_batch, "attack_batch")
    chosen = (certification.predictions != ABSTAIN) & (certification.radii >= min_radius)
    index = chosen.nonzero().flatten()
    if max_images is not None:
        index = index[:check_count(max_images, "max_images", minimum=0)]
    result = CertificateCheck(index, certification.predictions[index], certification.radii[index].double(),
                              alpha=certification.alpha, predict_alpha=predict_alpha)
    options = {"cw_profile": cw_profile, "cw_eot": cw_eot, "cw_options": dict(cw_options or {}),
               "pgd_steps": pgd_steps, "pgd_eot": pgd_eot, "margin": margin}
    result.settings = {**options, "samples": samples, "predict_n": predict_n, "sigma": certification.sigma,
                       "min_radius": min_radius, "seed": seed}
    device = model_device(model)
    smoothed = SmoothedSoftmax(model, certification.sigma, samples)
    with eval_mode(model, smoothed):
        for a, name in enumerate(attacks):
            l2, judged = [], []
            for start in range(0, len(index), batch):
                rows = index[start:start + batch]
                xb, cb = x[rows].to(device), certification.predictions[rows].to(device)
                with _seeded(mix_seed(seed, a, start)):
                    x_adv = _attack(name, smoothed, xb, cb, certification.radii[rows], options)
                l2.append((x_adv - xb).flatten(1).norm(dim=1).double().cpu())
                judged.append(predict(model, x_adv, certification.sigma, predict_n, predict_alpha,
                                      batch_size, seed=mix_seed(seed, a, start, 1)).classes)
            result.l2[name] = torch.cat(l2) if l2 else torch.zeros(0, dtype=torch.float64)
            result.judged[name] = torch.cat(judged) if judged else torch.zeros(0, dtype=torch.long)
    return result


def certify_and_check(path: str, sigma: float, *, check_images: int = 0,
                      check_options: dict[str, Any] | None = None, subset: int | None = None,
                      device: str = "cpu", progress: bool = False, **certify_options: Any
                      ) -> tuple[Certification, CertificateCheck | None, str]:
    """``pni certify`` of a checkpoint on its own test data (``subset``: a class-stratified
    sample), then, with ``check_images`` > 0, ``cross_check_certificates`` on the first that
    many certified images (``check_options``: its keyword arguments). Returns the
    certification, the check (None without one) and the model's label."""
    from .smoothing import certify_opened

    certification, run = certify_opened(path, sigma, subset=subset, device=device, progress=progress,
                                        **certify_options)
    if not check_images:
        return certification, None, run.label
    check = cross_check_certificates(run.model, run.data, certification, max_images=check_images,
                                     **(check_options or {}))
    return certification, check, run.label
