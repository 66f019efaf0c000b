"""Runs the audit: ``audit`` measures the checks of ``pni.auditing.checks.CHECKS`` on one
model and returns an ``AuditReport``; ``audit_checkpoint`` does it for a ``pni train``
checkpoint on its own data.

A randomized model is measured as it is used (noise on, single-draw gradients); every
attacked image is judged over ``votes`` forward passes (its expected
single-pass correctness: the same expectation, less noise), with the seeding of ``pni
eval`` (``pni.auditing.bench``), and item 4 counts a point as adversarial only when most of
``confirm_draws`` passes misclassify it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..settings import is_int
from ..attacks import is_randomized
from ..data import Dataset
from ..models.modes import cpu_channels_last, eval_mode
from .bench import Bench, prepare
from .checks import CHECKS, AuditRun
from .result import AuditItem, AuditReport, Sweep
from .settings import AuditError, AuditSettings, make_settings


def audit(model: nn.Module, data: Dataset | tuple[Tensor, Tensor], eps: float | None = None,
          surrogate: nn.Module | None = None, train_data: Dataset | tuple[Tensor, Tensor] | None = None,
          *, settings: AuditSettings | None = None, label: str = "model",
          device: str | torch.device | None = None, progress: bool = False,
          **overrides: Any) -> AuditReport:
    """Measures the gradient-obfuscation checklist (the paper's Table 7) on ``model``.

    Items 1-5 are the paper's (after Athalye et al. 2018), 6 (PGD steps) and 7 (EOT samples)
    go beyond it; ``pni.auditing.checks.CHECKS`` holds them. Randomness is seeded from the
    ``seed`` setting: the same call gives the same report.

    Args:
        model: the classifier (images in [0, 1]), measured in eval mode with its noise as it is.
        data: a pni Dataset or an ``(images, labels)`` pair, images (N, C, H, W) in [0, 1]; a
            class-stratified sample (seed 0) of ``n`` of them is used (setting ``n``, default
            None: all), recorded in ``AuditReport.subset``.
        eps: the L-inf radius audited at (required unless ``settings`` holds one).
        surrogate: source model of item 2's transfer attack (default None: one is trained on
            ``train_data``; without either, only item 2's score-based part, ZOO, is measured).
        train_data: data to train that surrogate on (default None).
        settings: a whole :class:`AuditSettings` (default None: its defaults).
        label: the model's name in the report (default "model").
        device: where to run (default None: the model's device).
        progress: print one line per item (default False).
        **overrides: fields of :class:`AuditSettings`: ``n``, ``items``, ``steps``, ``trials``,
            ``eot_ks``, ``votes``, ``score_n``, ... (each a rule's number).

    Returns:
        AuditReport: one ``AuditItem`` per item run (rule, evidence, verdict), the sweeps and
        the settings; ``passed`` is True when no measured item failed.

    Raises:
        AuditError: no ``eps``, an unknown or invalid setting, empty data or data the model
            does not take.

    Example:
        >>> import pni
        >>> model = pni.create_model("lenet5")
        >>> data = pni.load_dataset("mnist-sample", "test")
        >>> report = pni.audit(model, data, eps=0.1, items=(1,), n=20, steps=3)
        >>> [item.number for item in report.items], report.n, report.randomized
        ([1], 20, False)
    """
    s = make_settings(eps, settings, **overrides)
    say = _printer(progress)
    with eval_mode(model), cpu_channels_last(model):
        x, y, subset = prepare(model, data, s.n, device)
        torch.manual_seed(s.seed)
        randomized = is_randomized(model, x[: min(len(y), 16)])
        votes = s.votes if randomized else 1
        bench = Bench(model, x, y, s.trials, s.seed, s.batch_size, votes, subset)
        clean, _ = bench.clean()
        say(f"audit of {label}: {len(y)} images, eps {s.eps:.4g}, clean {100 * clean:.2f}%, "
            f"randomized: {'yes' if randomized else 'no'}")
        run = AuditRun(model, bench, s, randomized, label, surrogate, train_data, data, say)
        items: dict[int, AuditItem] = {}
        sweeps: dict[str, Sweep] = {}
        for number in s.items:
            check = CHECKS[number]
            say(f"item {number}: {check.title} ...")
            items[number], sweep = check.run(run)
            if check.sweep is not None and sweep is not None:
                sweeps[check.sweep] = sweep
            say(f"item {number}: {items[number].verdict}: {items[number].summary}")
    return AuditReport(label=label, items=[items[k] for k in sorted(items)], settings=s.to_json(),
                       n=len(y), randomized=randomized, clean_accuracy=clean, sweeps=sweeps,
                       subset=subset)


def _printer(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda text: None
    from tqdm.auto import tqdm
    return lambda text: tqdm.write(text)


def audit_checkpoint(path: str | Path, eps: float | None = None, n: int | None = 500,
                     surrogate: str | Path | None = None, train_surrogate_model: bool = True,
                     dataset: str | None = None, data_dir: str | None = None, split: str = "test",
                     device: str = "cpu", progress: bool = False, **overrides: Any) -> AuditReport:
    """Audits a ``pni train`` checkpoint on its own dataset (``split``), eps defaulting to
    the checkpoint's training eps, on ``n`` images (a class-stratified sample, seed 0; None:
    all). The transfer surrogate of item 2 is the checkpoint
    ``surrogate``, else (``train_surrogate_model``) one trained on the training split."""
    from ..models import load_model
    from ..data import load_dataset
    from ..evaluation.opened_run import open_checkpoint

    if n is not None and not is_int(n, 1):
        raise AuditError(f"--num-images must be a positive number of images, got {n!r}")
    run = open_checkpoint(path, dataset=dataset, data_dir=data_dir, split=split, n=n, device=device)
    settings = make_settings(run.eps if eps is None else eps, **overrides)
    if progress:  # say up front how long it will take
        from ..evaluation.estimate import announce, audit_seconds, measure_pass_rate, sample_images

        rate = measure_pass_rate(run.model, sample_images(run.data, device))
        trains = surrogate is None and train_surrogate_model  # counts only the items it will run
        announce("pni audit", audit_seconds(settings, len(run.data), rate, trains), len(run.data),
                 audit_seconds(settings, len(run.data), 1.0, trains) / len(run.data))
    source = None
    train_data = None
    if 2 in settings.items:
        if surrogate is not None:
            source, _ = load_model(surrogate, device=device)
        elif train_surrogate_model:
            train_data = load_dataset(run.data.name, "train", run.data_dir)
    return audit(run.model, run.data, settings=settings, surrogate=source, train_data=train_data,
                 label=run.label, device=device, progress=progress)
