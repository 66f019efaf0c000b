"""``EvalSettings``: every option of ``evaluate_checkpoint`` (and of ``pni eval``), each with
its default and help text on the field (``cli_args.add_dataclass_flags`` makes the flags)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings import option


@dataclass
class EvalSettings:
    """How a checkpoint is evaluated; None means "the checkpoint's own" (eps, step size,
    dataset) or "the paper's" (PGD steps). Fields with ``flag=False`` have no flag of their
    own in ``pni eval`` (``--attacks``, ``--n``, ``--noise``, ``--votes`` and the attack
    flags are written by hand there)."""

    attacks: tuple[str, ...] = option(("clean", "pgd", "fgsm"), "attacks run, by registry name",
                                      flag=False)
    trials: int = option(5, "trials with distinct seeds (the paper: 5)")
    n: int | None = option(None, "a class-stratified sample of n test images (None: all)", flag=False)
    eps: float | None = option(None, "L-inf radius, e.g. 8/255", default_text="the checkpoint's training eps")
    steps: int | None = option(None, "PGD steps",
                               default_text="7 for CIFAR-like data, 40 for MNIST-like, as the paper")
    step_size: float | None = option(None, "PGD step size",
                                     default_text="the checkpoint's training step size")
    noise: bool = option(True, "test with and without PNI (Table 2); False: without only", flag=False)
    dataset: str | None = option(None, "dataset", default_text="the checkpoint's")
    data_dir: str | None = option(None, "dataset folder", default_text="the checkpoint's")
    split: str = option("test", "dataset split")
    batch_size: int = option(256, "evaluation batch size", parse="positive")
    seed: int = option(0, "seed of the first trial")
    device: str = option("cpu", "cpu, cuda, cuda:N or mps", parse="device")
    progress: bool = option(False, "progress lines", flag=False)
    announce: bool = option(True, "with progress: first the estimated time (pni eval's line)", flag=False)
    distributed: bool = option(False, "under torchrun: shard the images, gather on rank 0", flag=False)
    votes: int = option(1, "noise draws each prediction is judged over (1: the paper's single pass)",
                        flag=False)
    worst_case: bool = option(True, "add the per-sample worst case over the attacks", flag=False)
    attack_options: dict[str, Any] | None = option(None, "options of the attack builders", flag=False)
    subset_seed: int = option(0, "seed of the class-stratified sample of n images", flag=False)
    cascade: tuple[str, ...] = option((), "attacks chained as AutoAttack chains its own: each runs only on "
                                      "the images still robust on some draw (cumulative accuracies)", flag=False)
    resume_file: str | None = option(None, "file of each finished attack's outcomes: a killed evaluation "
                                     "resumes from it (pni.evaluation.resume)", flag=False)


@dataclass
class TransferSettings:
    """How ``pni transfer`` attacks (Table 5, left): adversarial examples made on each
    checkpoint, judged on each other; None means "checkpoint A's own" (eps, step size,
    dataset) or "the paper's" (PGD steps). Every field is a flag of ``pni transfer``."""

    attack: str = option("pgd", "attack run on the source (any `pni eval` attack name)")
    trials: int = option(5, "trials with distinct seeds (the paper: 5)", parse="positive")
    n: int | None = option(None, "a class-stratified sample of N test images", default_text="all")
    eps: float | None = option(None, "L-inf radius, e.g. 8/255", default_text="A's training eps")
    steps: int | None = option(None, "PGD steps", default_text="7, or 40 for MNIST-like data, as the paper")
    step_size: float | None = option(None, "PGD step size", default_text="A's training step size")
    votes: int = option(1, "noise draws each target prediction is judged over", parse="positive")
    dataset: str | None = option(None, "dataset", default_text="A's")
    data_dir: str | None = option(None, "dataset folder", default_text="A's")
    split: str = option("test", "dataset split")
    batch_size: int = option(256, "batch size", parse="positive")
    seed: int = option(0, "seed of the first trial")
    device: str = option("cpu", "cpu, cuda, cuda:N or mps", parse="device")
