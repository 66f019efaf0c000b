"""The three scales of ``pni reproduce``: which tracks (data + model family) a plan runs
on, the training budget of each track, and the evaluation settings of each protocol.

* ``paper``: the paper's settings exactly (Sec. 4.1: CIFAR-10, eps 8/255, PGD-7 step 0.01,
  160 epochs, lr 0.1 x0.1 at 80/120, batch 128, weight decay 3e-4; 5 trials).
* ``smoke``: every plan on the packaged MNIST sample with LeNet-5, tiny subsets, seconds.
* ``cpu``: a CPU machine's budget (tens of CPU hours for every plan; ``--dry-run`` estimates
  what is left): an MNIST/LeNet-5 track (20,000
  training images) for Tables 1, 2, 4, 5, 7 and Fig. 2-3, and a CIFAR-10 track on the JPEG copy
  (``../shared/data/cifar10-jpeg.zip``; not CIFAR-10's exact pixels) with ResNet-20 on a
  8,000-image subset (12 epochs), Table 3's ResNet-20 and ResNet-32 at the same reduced budget.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import SCALES
from ..evaluation.protocols import HONEST, HONEST_VOTES, PAPER
from .steps import ReproduceError, Train

CIFAR_JPEG = "../shared/data/cifar10-jpeg.zip"
MNIST_TRACK_PLANS = frozenset({"table1", "table2", "table4", "table5", "table7", "fig2", "fig3"})
CIFAR_CPU_PLANS = frozenset({"table1", "table2", "table3", "table4", "table5", "table6", "table7",
                             "fig2", "fig3"})
# The Table 3 models the cpu CIFAR track trains: depth (ResNet-20 vs -32); the wider and deeper
# ones cost 2-16x a ResNet-20 (ResNet-20 x1.5 alone about 80 minutes), beyond the cpu scale's budget.
CPU_SMALL_MODELS = frozenset({("resnet20", 1.0), ("resnet32", 1.0)})


@dataclass(frozen=True)
class Track:
    """One data + model family a scale trains on; ``overrides`` are its budget."""

    name: str
    preset: str
    preset_scale: str
    overrides: dict[str, Any] = field(default_factory=dict)
    plans: frozenset[str] | None = None      # plans it serves (None: every plan)
    model: str | None = None                 # every model replaced by this one (LeNet-5 tracks)
    note: str = ""
    # evaluation protocols changed on this track (EVAL_PROTOCOLS keys -> settings replaced)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)

    def adapt(self, spec: Train, plan: str) -> Train | None:
        """The spec this track trains for ``spec`` in ``plan`` (None: not on this track)."""
        if self.plans is not None and plan not in self.plans:
            return None
        if self.model is not None:  # one model stands in for all, at width 1 (Table 4's 4x too)
            return dataclasses.replace(spec, model=self.model, width=1.0, preset=self.preset)
        if self.name == "cifar10-jpeg":
            if (spec.model, float(spec.width)) in CPU_SMALL_MODELS:
                return dataclasses.replace(spec, preset=self.preset)
            if plan == "table3":
                return None
            # Tables 4-6 and Fig. 3 name ResNet-20 x4 / ResNet-18: ResNet-20 stands in at cpu scale.
            return dataclasses.replace(spec, model="resnet20", width=1.0, preset=self.preset)
        return spec

    def fields(self, spec: Train) -> dict[str, Any]:
        return {**spec.overrides(), **self.overrides}


TRACKS: dict[str, tuple[Track, ...]] = {
    "paper": (Track("cifar10", "cifar-resnet20", "paper", note="the paper's settings"),),
    "smoke": (Track("mnist-sample", "mnist-lenet", "smoke", model="lenet5",
                    overrides={"train_subset": 128, "eval_subset": 32, "batch_size": 64, "steps": 2,
                               "progress": False},
                    note="packaged MNIST sample, LeNet-5 for every model, 128 images, 1 epoch, PGD-2"),),
    "cpu": (
        Track("mnist", "mnist-lenet", "cpu", plans=MNIST_TRACK_PLANS, model="lenet5",
              overrides={"train_subset": 20000, "epochs": 8, "milestones": [5, 7], "warmup_epochs": 1,
                         "eval_subset": 500},
              note="MNIST, 20,000 training images, LeNet-5 (standing in for every model of the plans), "
                   "8 epochs of PGD-40 at eps 0.3; honest protocol on 1,000 test images",
              protocols={"honest": {"n": 1000}}),
        Track("cifar10-jpeg", "cifar-resnet20", "cpu", plans=CIFAR_CPU_PLANS,
              overrides={"dataset": "imagefolder", "data_dir": CIFAR_JPEG, "train_subset": 8000,
                         "eval_subset": 200, "epochs": 12, "milestones": [6, 9]},
              note="CIFAR-10 JPEG copy, 8,000 training images, 12 epochs of PGD-7 "
                   "(ResNet-20 stands in for ResNet-20 x4 / ResNet-18); honest protocol on 500 test images",
              protocols={"honest": {"n": 500}}),
    ),
}

# Evaluation protocols: keyword arguments of pni.evaluation.evaluator.evaluate_checkpoint per scale.
# "paper": the paper's white-box columns (Tables 1-3, 6); "honest": EOT-PGD (20 draws) and
# AutoAttack-rand at pyautoattack's published budget (APGD-CE + APGD-DLR, 100 iterations, EOT
# 20), judged over 10 noise draws and cascaded as AutoAttack cascades its attacks (clean ->
# EOT-PGD -> AA-rand: each runs only on the images still robust on some draw; cumulative
# accuracies, the per-image worst case exactly that of running all on all); "cw-paper" /
# "cw-strong": Table 4's C&W-L2 profiles (pni.attacks.cw.CW_PROFILES) with EOT over the noise,
# their successes judged over 10 fresh draws; "zoo": Table 5 (right), ZOO and EOT-ZOO, judged
# the same way. The smoke scale's reduced budgets are labelled as such wherever shown
# (pni.attacks.budget).
_PAPER = PAPER.settings()       # the protocols themselves: pni.evaluation.protocols
_HONEST = HONEST.settings()
_CW = {"attacks": ["clean", "cw"], "votes": HONEST_VOTES, "worst_case": False, "noise": True}
_ZOO = {"attacks": ["clean", "zoo", "eot-zoo"], "votes": HONEST_VOTES, "worst_case": False, "noise": True}

EVAL_PROTOCOLS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "paper": {**_PAPER, "trials": 5, "n": None},
        "honest": {**_HONEST, "trials": 1, "n": 1000, "attack_options": {"eot": 20}},
        "cw-paper": {**_CW, "trials": 1, "n": None,
                     "attack_options": {"cw_profile": "paper", "cw": {"eot": 10, "votes": HONEST_VOTES}}},
        "cw-strong": {**_CW, "trials": 1, "n": 1000,
                      "attack_options": {"cw_profile": "strong", "cw": {"eot": 10, "votes": HONEST_VOTES}}},
        "zoo": {**_ZOO, "trials": 1, "n": 200, "attack_options": {"zoo": {"votes": HONEST_VOTES}}},
    },
    "cpu": {
        "paper": {**_PAPER, "trials": 5, "n": 1000},
        "honest": {**_HONEST, "trials": 1, "n": 200, "attack_options": {"eot": 20}},
        "cw-paper": {**_CW, "trials": 1, "n": 500,
                     "attack_options": {"cw_profile": "paper", "cw": {"eot": 5, "votes": HONEST_VOTES}}},
        "cw-strong": {**_CW, "trials": 1, "n": 100,
                      "attack_options": {"cw_profile": "strong",
                                         "cw": {"steps": 200, "eot": 5, "votes": HONEST_VOTES}}},
        "zoo": {**_ZOO, "trials": 1, "n": 100, "attack_options": {"zoo": {"steps": 50, "votes": HONEST_VOTES}}},
    },
    "smoke": {
        "paper": {**_PAPER, "trials": 2, "n": 32},
        "honest": {**_HONEST, "votes": 2, "trials": 1, "n": 16,
                   "attack_options": {"eot": 2, "aa": {"n_iter": 2, "eot_iter": 2}}},
        "cw-paper": {**_CW, "votes": 2, "trials": 1, "n": 16,
                     "attack_options": {"cw_profile": "paper", "cw": {"binary_search_steps": 2, "votes": 2}}},
        "cw-strong": {**_CW, "votes": 2, "trials": 1, "n": 16,
                      "attack_options": {"cw_profile": "strong",
                                         "cw": {"steps": 5, "binary_search_steps": 2, "eot": 2, "votes": 2}}},
        "zoo": {**_ZOO, "votes": 2, "trials": 1, "n": 10,
                "attack_options": {"zoo": {"steps": 2, "coords": 8, "votes": 2}}},
    },
}

# Table 5 (left): transferred PGD, trials and images per scale.
TRANSFER: dict[str, dict[str, Any]] = {
    "paper": {"attack": "pgd", "trials": 5, "n": None, "votes": HONEST_VOTES},
    "cpu": {"attack": "pgd", "trials": 3, "n": 1000, "votes": HONEST_VOTES},
    "smoke": {"attack": "pgd", "trials": 1, "n": 32},
}

# Table 5: the substitute-model attack (Papernot et al. 2017; pni.attacks.substitute). The
# first ``seed_n`` test images seed the substitute (their labels unused: the target's answers
# label them); the next ``n`` (None: the rest) are the held-out images its agreement with the
# target and the transferred FGSM / PGD (the run's eps; PGD with the paper's steps) are judged on.
SUBSTITUTE: dict[str, dict[str, Any]] = {
    "paper": {"seed_n": 150, "rounds": 6, "epochs_per_round": 10, "lambda": 0.1, "n": None,
              "attacks": ["fgsm", "pgd"], "votes": HONEST_VOTES},
    "cpu": {"seed_n": 150, "rounds": 6, "epochs_per_round": 10, "lambda": 0.1, "n": 1000,
            "attacks": ["fgsm", "pgd"], "votes": HONEST_VOTES},
    "smoke": {"seed_n": 32, "rounds": 2, "epochs_per_round": 1, "lambda": 0.1, "n": 32,
              "attacks": ["fgsm", "pgd"], "votes": 1, "steps": 2},
}

# Table 7 / Fig. 3: pni.auditing.audit_checkpoint settings per scale.
AUDIT: dict[str, dict[str, Any]] = {
    "paper": {"n": 500},
    "cpu": {"n": 200, "surrogate_epochs": 3, "surrogate_train_n": 5000, "score_n": 20,
            "score_queries": 5000, "random_samples": 200, "random_n": 50},
    "smoke": {"n": 16, "steps": 2, "trials": 1, "unbounded_steps": 3, "random_samples": 8,
              "random_n": 4, "steps_values": [1, 2], "eot_ks": [1, 2], "surrogate_epochs": 1,
              "surrogate_train_n": 128, "score_n": 2, "score_queries": 30, "score_coords": 8,
              "votes": 2, "confirm_draws": 2},
}


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ReproduceError(f"unknown scale {scale!r}; expected one of: {', '.join(SCALES)}")
    return scale


def tracks(scale: str, data_dir: str | None = None) -> tuple[Track, ...]:
    """The tracks of ``scale``; with ``data_dir``, its CIFAR-10 tracks read the CIFAR-10 image
    folder (or zip) there instead, e.g. the JPEG copy on a GPU machine that cannot download the
    official pixels (a different dataset, so different run keys, and the track says so)."""
    chosen = TRACKS[check_scale(scale)]
    if data_dir is None:
        return chosen
    return tuple(dataclasses.replace(
        t, overrides={**t.overrides, "dataset": "imagefolder", "data_dir": data_dir, "download": False},
        note=f"{t.note}; data: the CIFAR-10 image folder {data_dir} (e.g. the JPEG copy, not the official pixels)")
        if t.preset.startswith("cifar") else t for t in chosen)


def eval_settings(scale: str, protocol: str, track: str | None = None) -> dict[str, Any]:
    """The settings of ``protocol`` at ``scale``, with ``track``'s own changes to it (the cpu
    tracks judge the honest protocol on more images than its 200: a LeNet-5 evaluation costs
    seconds, and two standard errors on 200 images, about 4 points, decide little)."""
    table = EVAL_PROTOCOLS[check_scale(scale)]
    if protocol not in table:
        raise ReproduceError(f"unknown evaluation protocol {protocol!r}; expected one of: "
                             f"{', '.join(table)}")
    changes = next((t.protocols.get(protocol, {}) for t in TRACKS[scale] if t.name == track), {})
    return {**table[protocol], **changes}

# Table 6 certificates: pni.certify.certify_checkpoint settings per scale (Cohen et al. use
# n = 100,000 samples on 500 test images; the cpu scale draws fewer, so its radii are smaller).
# ``check``: the certificates of the first ``images`` certified images cross-checked against the
# strong C&W-L2 and an L2 PGD with EOT on the smoothed classifier (pni.certification.check; audit item 8),
# with cheaper attack budgets below the paper scale.
CERTIFY: dict[str, dict[str, Any]] = {
    "paper": {"subset": 500, "n0": 100, "n": 100_000, "alpha": 0.001, "batch_size": 1000,
              "check": {"images": 100}},
    "cpu": {"subset": 100, "n0": 100, "n": 2_000, "alpha": 0.001, "batch_size": 500,
            "check": {"images": 10, "cw_options": {"steps": 50, "binary_search_steps": 3}, "pgd_steps": 50,
                      "pgd_eot": 2, "samples": 8, "predict_n": 1000}},
    "smoke": {"subset": 8, "n0": 10, "n": 100, "alpha": 0.01, "batch_size": 100,
              "check": {"images": 2, "cw_options": {"steps": 3, "binary_search_steps": 1}, "pgd_steps": 2,
                        "pgd_eot": 1, "samples": 2, "predict_n": 50}},
}
