"""Adversarial training with PNI: the min-max of Eq. 10-12 as a fast, resumable loop.

Inner max: PGD-Linf with the noise on (Eq. 12), labels = the model's own predictions on
the clean batch (no label leaking), random start, BatchNorm in eval mode while the
adversary runs. Outer min: ``w_clean * CE(clean) + w_adv * CE(adv)`` (Eq. 11) with SGD
momentum 0.9 Nesterov, a multi-step schedule and no weight decay on alpha (Sec. 3.1).
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .attacks import pgd
from .checkpoint import FORMAT, VERSION, atomic_save, load_state, model_meta, read_checkpoint
from .config import TrainConfig
from .data import BatchLoader, Dataset, as_tensors
from .evaluate import accuracy
from .models import create_model
from .noise import alpha_parameters, alpha_values, freeze_alphas, inject, noise_enabled, noise_modules, param_groups

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"
CONFIG = "config.json"

StepCallback = Callable[[nn.Module, int, int], None]


class TrainingError(RuntimeError):
    """A training run that cannot go on (diverged, or an output folder in use)."""


class RunExistsError(TrainingError):
    """The output folder already holds another run."""


@dataclass
class TrainResult:
    """What ``fit`` returns: the per-epoch metrics and where the run was written."""

    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def build_model(config: TrainConfig, data: Dataset) -> nn.Module:
    """The model a config describes, normalized with the dataset's statistics, with noise."""
    model = create_model(config.model, num_classes=len(data.classes), width=config.width,
                         in_channels=data.image_shape[0], normalize=(data.mean, data.std))
    if config.location is not None:
        inject(model, config.location, config.granularity, config.init_alpha)
    return model


def _check_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    in_use = [name for name in (CHECKPOINT, LOG) if (out_dir / name).exists()]
    if not in_use or resume:
        return
    if overwrite:
        for name in (CHECKPOINT, LOG, CONFIG):
            (out_dir / name).unlink(missing_ok=True)
        return
    raise RunExistsError(f"output folder {str(out_dir)!r} already holds a run ({', '.join(in_use)}); "
                         f"pass resume=True (--resume) to continue it or overwrite=True (--overwrite) "
                         f"to replace it")


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _first_non_finite(model: nn.Module) -> str | None:
    """The name of the first noise alpha, then parameter, holding a NaN or inf."""
    for key, noise in noise_modules(model).items():
        if not torch.isfinite(noise.alpha).all():
            return f"alpha of layer {key}"
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            return f"parameter {name}"
    return None


class Trainer:
    """One training run: owns the model, optimizer, schedule, loaders and the output folder."""

    def __init__(self, model: nn.Module, train_set: Dataset | tuple[Tensor, Tensor],
                 config: TrainConfig, test_set: Dataset | tuple[Tensor, Tensor] | None = None,
                 out_dir: str | os.PathLike | None = None,
                 step_callback: StepCallback | None = None) -> None:
        self.config = config.validate()
        self.device = torch.device(config.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.step_callback = step_callback
        if config.fixed_alpha is not None:
            freeze_alphas(model, config.fixed_alpha)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.dataset_name = getattr(train_set, "name", "tensors")
        augment = None if config.augment == "none" else config.augment
        self.loader = BatchLoader(train_set, config.batch_size, shuffle=True, augment=augment,
                                  seed=config.seed, device=self.device, drop_last=False,
                                  channels_last=config.channels_last)
        self.eval_pair: tuple[Tensor, Tensor] | None = None
        if test_set is not None and config.eval_subset > 0:
            images, labels = as_tensors(test_set)
            n = min(config.eval_subset, len(labels))
            self.eval_pair = (images[:n].to(self.device), labels[:n].to(self.device))
        self.optimizer = torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr,
                                         momentum=config.momentum, nesterov=config.nesterov)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.milestones), gamma=config.gamma)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []

    # --- the step -------------------------------------------------------------------

    def _adversarial_examples(self, x: Tensor, labels: Tensor) -> Tensor:
        """Inner max (Eq. 12): PGD with BatchNorm in eval mode and the noise on (or off for
        the Table 1 ablation); the model's mode is restored afterwards."""
        cfg = self.config
        self.model.eval()
        try:
            with noise_enabled(self.model, True) if cfg.adv_noise else noise_enabled(self.model, False):
                return pgd(self.model, x, labels, cfg.eps, cfg.step_size, cfg.steps, random_start=True)
        finally:
            self.model.train()

    def train_step(self, x: Tensor, y: Tensor, adversarial: bool) -> dict[str, float]:
        """One update on one batch; returns its losses and accuracies (as Python floats)."""
        cfg = self.config
        self.model.train()
        logits_clean = self.model(x)
        loss_clean = F.cross_entropy(logits_clean, y)
        stats = {"loss_clean": loss_clean.detach(),
                 "acc_clean": (logits_clean.detach().argmax(1) == y).float().mean()}
        if adversarial:
            # The clean forward is reused: its predictions are the attack's labels.
            predicted = logits_clean.detach().argmax(1)
            x_adv = self._adversarial_examples(x, predicted)
            logits_adv = self.model(x_adv)
            loss_adv = F.cross_entropy(logits_adv, y)
            loss = cfg.w_clean * loss_clean + cfg.w_adv * loss_adv
            stats["loss_adv"] = loss_adv.detach()
            stats["acc_adv"] = (logits_adv.detach().argmax(1) == y).float().mean()
        else:
            loss = loss_clean
        if not torch.isfinite(loss):
            culprit = _first_non_finite(self.model) or "the loss (inputs or logits)"
            raise TrainingError(f"non-finite loss ({loss.item()}); first non-finite value: {culprit}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        alphas = alpha_parameters(self.model)
        if alphas and not torch.isfinite(torch.cat([a.detach().flatten() for a in alphas])).all():
            raise TrainingError(f"non-finite {_first_non_finite(self.model)} after the update")
        stats["loss"] = loss.detach()
        return {k: float(v) for k, v in stats.items()}

    # --- epochs ---------------------------------------------------------------------

    def _evaluate(self) -> dict[str, float]:
        if self.eval_pair is None:
            return {}
        cfg = self.config
        x, y = self.eval_pair
        steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
        clean = accuracy(self.model, x, y, batch_size=max(cfg.batch_size, 256))
        attack = (lambda m, xb, yb: pgd(m, xb, yb, cfg.eps, cfg.step_size, steps, random_start=True))
        robust = accuracy(self.model, x, y, attack=attack, batch_size=max(cfg.batch_size, 256))
        return {"test_clean_acc": clean, "test_pgd_acc": robust}

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.config
        adversarial = cfg.adversarial and epoch >= cfg.warmup_epochs
        self.loader.set_epoch(epoch)
        totals: dict[str, float] = {}
        count = 0
        started = time.perf_counter()
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not cfg.progress, unit="batch")
        for step, (x, y) in enumerate(bar):
            if self.step_callback is not None:
                self.step_callback(self.model, epoch, step)
            stats = self.train_step(x, y, adversarial)
            n = len(y)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value * n
            count += n
            bar.set_postfix(loss=f"{stats['loss']:.3f}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        record: dict[str, Any] = {"epoch": epoch + 1, "adversarial": adversarial, "lr": lr}
        record.update({f"train_{k}": v / max(count, 1) for k, v in totals.items()})
        record["train_seconds"] = time.perf_counter() - started
        record.update(self._evaluate())
        record["alphas"] = alpha_values(self.model)
        return record

    # --- checkpoints ----------------------------------------------------------------

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "epoch": epoch,
            "model": self.model.state_dict(), "model_meta": model_meta(self.model),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(), "config": self.config.to_dict(), "dataset": self.dataset_name,
            "metrics": self.history[-1] if self.history else {},
        }

    def restore(self, path: Path) -> None:
        checkpoint = read_checkpoint(path)
        load_state(self.model, checkpoint["model"], source=f"checkpoint {str(path)!r}")
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng_state(checkpoint["rng"])
        self.start_epoch = int(checkpoint["epoch"])
        if self.out_dir is not None and (self.out_dir / LOG).exists():
            lines = (self.out_dir / LOG).read_text().splitlines()
            self.history = [r for r in map(json.loads, filter(None, lines)) if r["epoch"] <= self.start_epoch]

    def _write_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        assert self.out_dir is not None
        atomic_save(self.checkpoint(epoch), self.out_dir / CHECKPOINT)
        log = self.out_dir / LOG
        tmp = log.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        os.replace(tmp, log)

    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        cfg = self.config
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _check_out_dir(self.out_dir, resume, overwrite)
            if resume and (self.out_dir / CHECKPOINT).exists():
                self.restore(self.out_dir / CHECKPOINT)
            (self.out_dir / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        if self.start_epoch == 0:
            torch.manual_seed(cfg.seed)
        for epoch in range(self.start_epoch, cfg.epochs):
            record = self.run_epoch(epoch)
            self.history.append(record)
            if self.out_dir is not None:
                self._write_epoch(epoch + 1, record)
            if cfg.progress:
                tqdm.write(_epoch_line(record))
        return TrainResult(self.history, self.out_dir)


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}", f"loss {record.get('train_loss', math.nan):.4f}"]
    for key, label in (("test_clean_acc", "clean"), ("test_pgd_acc", "pgd")):
        if key in record:
            parts.append(f"{label} {100 * record[key]:.2f}%")
    parts.append(f"lr {record['lr']:.4g}")
    parts.append(f"{record['train_seconds']:.1f}s")
    return " | ".join(parts)


def fit(model: nn.Module, train_set: Dataset | tuple[Tensor, Tensor], config: TrainConfig,
        test_set: Dataset | tuple[Tensor, Tensor] | None = None, *,
        out_dir: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
        step_callback: StepCallback | None = None) -> TrainResult:
    """Trains ``model`` in place as ``config`` says (Eq. 10-12) and returns the history.

    With ``out_dir``, every epoch appends its metrics to ``train_log.jsonl`` and writes
    ``checkpoint.pt`` atomically; ``resume=True`` continues from that checkpoint exactly.
    A non-finite loss or alpha raises TrainingError naming the layer and leaves the last
    checkpoint as it was.
    """
    trainer = Trainer(model, train_set, config, test_set, out_dir, step_callback)
    return trainer.fit(resume=resume, overwrite=overwrite)


def copy_run(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copies a run folder (checkpoint, log, config)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
