"""Adversarial training with PNI: the min-max of Eq. 10-12 as a fast, resumable loop.

Inner max: PGD-Linf with the noise on (Eq. 12), labels = the model's own predictions on
the clean batch (no label leaking), random start, BatchNorm in eval mode while the
adversary runs. Outer min: ``w_clean * CE(clean) + w_adv * CE(adv)`` (Eq. 11) with SGD
momentum 0.9 Nesterov, a multi-step schedule and no weight decay on alpha (Sec. 3.1).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
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

from . import distributed
from .attacks import pgd
from .attacks.gradient import pgd_unchecked
from .checkpoint import FORMAT, VERSION, atomic_save, load_state, model_meta, read_checkpoint
from .config import TrainConfig
from .cuda_graphs import GraphedStep, configure_backends, graphs_supported
from .data import BatchLoader, Dataset, subset_tensors, warn_missing_classes
from .evaluate import correct_mask
from .models import create_model, eval_mode
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
    stopped_early: bool = False  # stopped by max_minutes before config.epochs

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


def _rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The random state; with ``device`` (one GPU per torchrun process) only that GPU's.

    Only ByteTensors and plain lists, ints and floats, so that checkpoints load with
    ``torch.load(..., weights_only=True)``: numpy's state tuple and Python's are stored as lists.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
             "numpy": [str(name), keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restores ``_rng_state``'s random state; a malformed one raises CheckpointError."""
    from .checkpoint import CheckpointError

    try:
        version, internal, gauss = state["python"]
        name, keys, pos, has_gauss, cached = state["numpy"]
        torch.set_rng_state(state["torch"])
        random.setstate((int(version), tuple(internal), gauss))
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss),
                             float(cached)))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"the checkpoint's random state cannot be restored: {error}") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)


def _reseed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


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
    """One training run: owns the model, optimizer, schedule, loaders and the output folder.

    Under ``torchrun`` (``WORLD_SIZE > 1``) it joins the process group (``pni.distributed``)
    and trains with DistributedDataParallel: ``self.model`` is the DDP wrapper used for the
    two training forwards, ``self.net`` the unwrapped module (attacks, evaluation,
    checkpoints); each rank reads its shard of every epoch with ``batch_size / world_size``
    images per step, and only rank 0 writes the log and checkpoint. In one process
    ``self.model is self.net``.
    """

    def __init__(self, model: nn.Module, train_set: Dataset | tuple[Tensor, Tensor],
                 config: TrainConfig, test_set: Dataset | tuple[Tensor, Tensor] | None = None,
                 out_dir: str | os.PathLike | None = None,
                 step_callback: StepCallback | None = None) -> None:
        self.config = config.validate()
        self.device = distributed.init(config.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.step_callback = step_callback
        if config.fixed_alpha is not None:
            freeze_alphas(model, config.fixed_alpha)
        configure_backends(self.device, config.tf32, torch.are_deterministic_algorithms_enabled(),
                           config.cudnn_benchmark)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.net = self.model
        self.dataset_name = getattr(train_set, "name", "tensors")
        augment = None if config.augment == "none" else config.augment
        self.loader = BatchLoader(train_set, distributed.split_batch(config.batch_size, self.world_size),
                                  shuffle=True, augment=augment, seed=config.seed, device=self.device,
                                  drop_last=False, rank=self.rank, world_size=self.world_size,
                                  channels_last=config.channels_last)
        num_classes = getattr(model, "num_classes", None)
        if num_classes and self.is_main:
            warn_missing_classes(self.loader._labels, num_classes, "the training data")
        self.eval_pair: tuple[Tensor, Tensor] | None = None
        if test_set is not None and config.eval_subset > 0:
            # A fixed class-stratified sample (seed 0): every run is judged on the same images.
            images, labels, _ = subset_tensors(test_set, config.eval_subset, seed=0, num_classes=num_classes)
            self.eval_pair = (images.to(self.device), labels.to(self.device))
        self.optimizer = torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr,
                                         momentum=config.momentum, nesterov=config.nesterov)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.milestones), gamma=config.gamma)
        if self.world_size > 1:
            self.model = distributed.wrap(self.net, self.device, config.sync_bn)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.graphed: GraphedStep | None = None
        if config.cuda_graphs and not config.compile and self.world_size == 1 and graphs_supported(self.device):
            self.graphed = GraphedStep(self.step_losses, self.train_step_tensors, self.optimizer,
                                       self._finite_state)
        self._graph_note: str | None = None
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self._note: str | None = None

    # --- the step -------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for every pass of the step when ``config.bf16`` (off by default)."""
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _adversarial_examples(self, x: Tensor, labels: Tensor) -> Tensor:
        """Inner max (Eq. 12): PGD with BatchNorm in eval mode and the noise on (or off for
        the Table 1 ablation); the model's mode is restored afterwards."""
        cfg = self.config
        self.model.eval()
        try:
            with noise_enabled(self.net, cfg.adv_noise):
                return pgd_unchecked(self.net, x, labels, cfg.eps, cfg.step_size, cfg.steps,
                                     random_start=True, fold_bn=cfg.fold_bn)
        finally:
            self.model.train()

    def step_losses(self, x: Tensor, y: Tensor, adversarial: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective of Eq. 11 on one batch and its statistics, as device tensors, with no
        host synchronization (so ``pni.cuda_graphs`` can record it)."""
        cfg = self.config
        self.model.train()
        with self._autocast():
            logits_clean = self.forward(x)
            loss_clean = F.cross_entropy(logits_clean, y)
            stats = {"loss_clean": loss_clean.detach(),
                     "acc_clean": (logits_clean.detach().argmax(1) == y).float().mean()}
            if adversarial:
                # The clean forward is reused: its predictions are the attack's labels.
                predicted = logits_clean.detach().argmax(1)
                x_adv = self._adversarial_examples(x, predicted)
                logits_adv = self.forward(x_adv)
                loss_adv = F.cross_entropy(logits_adv, y)
                loss = cfg.w_clean * loss_clean + cfg.w_adv * loss_adv
                stats["loss_adv"] = loss_adv.detach()
                stats["acc_adv"] = (logits_adv.detach().argmax(1) == y).float().mean()
            else:
                loss = loss_clean
        return loss.float(), stats

    def _finite_state(self, loss: Tensor) -> Tensor:
        """A boolean tensor: the loss and every alpha finite (no host synchronization)."""
        flags = [torch.isfinite(loss).all()]
        flags += [torch.isfinite(a.detach()).all() for a in alpha_parameters(self.net)]
        return torch.stack(flags).all()

    def train_step_tensors(self, x: Tensor, y: Tensor, adversarial: bool) -> dict[str, Tensor]:
        """One eager update on one batch; its losses and accuracies as device tensors. A
        non-finite loss raises before the update, a non-finite alpha right after it."""
        loss, stats = self.step_losses(x, y, adversarial)
        if not torch.isfinite(loss):
            culprit = _first_non_finite(self.net) or "the loss (inputs or logits)"
            raise TrainingError(f"non-finite loss ({loss.item()}); first non-finite value: {culprit}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        alphas = alpha_parameters(self.net)
        if alphas and not torch.isfinite(torch.cat([a.detach().flatten() for a in alphas])).all():
            raise TrainingError(f"non-finite {_first_non_finite(self.net)} after the update")
        stats["loss"] = loss.detach()
        return stats

    def train_step(self, x: Tensor, y: Tensor, adversarial: bool) -> dict[str, float]:
        """One update on one batch; returns its losses and accuracies (as Python floats)."""
        return {k: float(v) for k, v in self.train_step_tensors(x, y, adversarial).items()}

    def _step(self, x: Tensor, y: Tensor, adversarial: bool) -> tuple[dict[str, Tensor], Tensor | None]:
        """One step of an epoch, replayed from the CUDA graph where possible, else eager; with
        a replay, also the flag "loss and alphas finite" still to be checked."""
        if self.graphed is None:
            return self.train_step_tensors(x, y, adversarial), None
        result = self.graphed(x, y, adversarial, full_batch=len(y) == self.loader.batch_size)
        if self.graphed.failure is not None and self._graph_note is None:
            self._graph_note = self._note = f"CUDA graph recording failed, eager steps: {self.graphed.failure}"
            if self.config.progress and self.is_main:
                tqdm.write(self._note)
        return result

    def _check_finite(self, finite: Tensor | None) -> None:
        """Raises TrainingError when a replayed step left a non-finite loss or alpha. Checked
        one step late (the GPU keeps working meanwhile) and always before a checkpoint."""
        if finite is not None and not bool(finite):
            culprit = _first_non_finite(self.net) or "the loss (inputs or logits)"
            raise TrainingError(f"non-finite training state after a step; first non-finite value: "
                                f"{culprit} (the last checkpoint is kept)")

    # --- epochs ---------------------------------------------------------------------

    def _shard_accuracy(self, x: Tensor, y: Tensor, attack: Callable | None, batch_size: int) -> float:
        """Accuracy over every rank's shard of the held-out images (all of them in one process)."""
        with eval_mode(self.net):
            mask = correct_mask(self.net, x, y, attack, batch_size)
        correct, total = distributed.all_reduce_sum([int(mask.sum()), len(mask)])
        return correct / total if total else math.nan

    def _evaluate(self) -> dict[str, float]:
        if self.eval_pair is None:
            return {}
        cfg = self.config
        batch_size = max(cfg.batch_size, 256)
        lo, hi = distributed.shard_range(len(self.eval_pair[1]), batch_size, self.rank, self.world_size)
        x, y = self.eval_pair[0][lo:hi], self.eval_pair[1][lo:hi]
        steps = cfg.steps if cfg.eval_steps is None else cfg.eval_steps
        clean = self._shard_accuracy(x, y, None, batch_size)
        attack = (lambda m, xb, yb: pgd(m, xb, yb, cfg.eps, cfg.step_size, steps, random_start=True))
        robust = self._shard_accuracy(x, y, attack, batch_size)
        return {"test_clean_acc": clean, "test_pgd_acc": robust}

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.config
        adversarial = cfg.adversarial and epoch >= cfg.warmup_epochs
        self.loader.set_epoch(epoch)
        sums: dict[str, Tensor] = {}
        pending: Tensor | None = None
        count = 0
        started = time.perf_counter()
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, unit="batch",
                   disable=None if cfg.progress and self.is_main else True)  # None: terminals only
        for step, (x, y) in enumerate(bar):
            if self.step_callback is not None:
                self.step_callback(self.net, epoch, step)
            stats, finite = self._step(x, y, adversarial)
            self._check_finite(pending)
            pending = finite
            n = len(y)
            for key, value in stats.items():  # summed on the device: no per-step copy
                sums[key] = sums[key] + value.float() * n if key in sums else value.float() * n
            count += n
            if step % 25 == 0:
                bar.set_postfix(loss=f"{float(stats['loss']):.3f}")
        self._check_finite(pending)
        totals = {key: float(value) for key, value in sums.items()}
        if self.world_size > 1:  # metrics over the global batch; BN statistics agree again
            keys = sorted(totals)
            summed = distributed.all_reduce_sum([count, *(totals[k] for k in keys)])
            count, totals = int(summed[0]), dict(zip(keys, summed[1:]))
            if not cfg.sync_bn:
                distributed.average_buffers(self.net)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        record: dict[str, Any] = {"epoch": epoch + 1, "adversarial": adversarial, "lr": lr}
        record.update({f"train_{k}": v / max(count, 1) for k, v in totals.items()})
        record["train_seconds"] = time.perf_counter() - started
        record.update(self._evaluate())
        record["alphas"] = alpha_values(self.net)
        return record

    # --- checkpoints ----------------------------------------------------------------

    def checkpoint(self, epoch: int) -> dict[str, Any]:
        """The checkpoint of the unwrapped model (loadable by one process); under torchrun a
        collective call: every rank's random state is gathered (``rng_ranks``)."""
        rng = distributed.all_gather_object(_rng_state(self.device if self.world_size > 1 else None))
        checkpoint = {
            "format": FORMAT, "version": VERSION, "epoch": epoch,
            "model": self.net.state_dict(), "model_meta": model_meta(self.net),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng[0], "world_size": self.world_size, "config": self.config.to_dict(),
            "dataset": self.dataset_name, "metrics": self.history[-1] if self.history else {},
        }
        if self.world_size > 1:
            checkpoint["rng_ranks"] = rng
        return checkpoint

    def _read_log(self) -> list[dict[str, Any]]:
        if self.out_dir is None or not (self.out_dir / LOG).exists():
            return []
        return list(map(json.loads, filter(None, (self.out_dir / LOG).read_text().splitlines())))

    def restore(self, path: Path) -> None:
        """Continues from a checkpoint; rank 0 reads it (and the log) and hands it to every rank.

        A checkpoint saved by the same number of processes restores each rank's random
        state exactly; from another number, the per-rank streams are reseeded from
        (seed, epoch, rank), and the next epoch's log record says so (``note``).
        """
        checkpoint, log = distributed.on_main(lambda: (read_checkpoint(path, resume=True), self._read_log()))
        load_state(self.net, checkpoint["model"], source=f"checkpoint {str(path)!r}")
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.start_epoch = int(checkpoint["epoch"])
        saved_world = int(checkpoint.get("world_size", 1))
        states = checkpoint.get("rng_ranks") or [checkpoint["rng"]]
        if saved_world == self.world_size and len(states) == self.world_size:
            _set_rng_state(states[self.rank], self.device if self.world_size > 1 else None)
        else:
            from .data import mix_seed

            _reseed(mix_seed(self.config.seed, self.start_epoch, self.rank))
            self._note = (f"resumed a checkpoint written by {saved_world} process(es) with "
                          f"{self.world_size}: random streams reseeded from (seed, epoch, rank)")
            if self.config.progress and self.is_main:
                tqdm.write(self._note)
        self.history = [r for r in log if r["epoch"] <= self.start_epoch]

    def _write_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        assert self.out_dir is not None
        checkpoint = self.checkpoint(epoch)  # collective under torchrun
        if self.is_main:
            atomic_save(checkpoint, self.out_dir / CHECKPOINT)
            log = self.out_dir / LOG
            tmp = log.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            os.replace(tmp, log)
        distributed.barrier()

    def _prepare_out_dir(self, resume: bool, overwrite: bool) -> bool:
        """Rank 0: creates/checks the output folder; True when there is a run to resume."""
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _check_out_dir(self.out_dir, resume, overwrite)
        return resume and (self.out_dir / CHECKPOINT).exists()

    def _out_of_time(self, started: float, max_minutes: float | None) -> bool:
        """True when another epoch, as long as the longest so far, would end past the limit."""
        if max_minutes is None or not self._epoch_seconds:
            return False
        return time.perf_counter() - started + max(self._epoch_seconds) > 60 * max_minutes

    def fit(self, resume: bool = False, overwrite: bool = False,
            max_minutes: float | None = None) -> TrainResult:
        """Trains from ``start_epoch`` to ``config.epochs``; with ``max_minutes``, stops after
        the last epoch that fits in that time (``TrainResult.stopped_early``; resume later)."""
        cfg = self.config
        started = time.perf_counter()
        self._epoch_seconds: list[float] = []
        if self.out_dir is not None:
            if distributed.on_main(lambda: self._prepare_out_dir(resume, overwrite)):
                self.restore(self.out_dir / CHECKPOINT)
            if self.is_main:
                (self.out_dir / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        if self.start_epoch == 0:
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.rank))
        for epoch in range(self.start_epoch, cfg.epochs):
            if self._out_of_time(started, max_minutes):
                return TrainResult(self.history, self.out_dir, stopped_early=True)
            epoch_started = time.perf_counter()
            record = self.run_epoch(epoch)
            if self._note is not None:
                record["note"], self._note = self._note, None
            self.history.append(record)
            if self.out_dir is not None:
                self._write_epoch(epoch + 1, record)
            if cfg.progress and self.is_main:
                tqdm.write(_epoch_line(record))
            self._epoch_seconds.append(time.perf_counter() - epoch_started)
        if self.graphed is not None:
            self.graphed.release()
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
        step_callback: StepCallback | None = None, max_minutes: float | None = None) -> TrainResult:
    """Trains ``model`` in place as ``config`` says (Eq. 10-12) and returns the history.

    With ``out_dir``, every epoch appends its metrics to ``train_log.jsonl`` and writes
    ``checkpoint.pt`` atomically; ``resume=True`` continues from that checkpoint exactly.
    A non-finite loss or alpha raises TrainingError naming the layer and leaves the last
    checkpoint as it was. ``max_minutes`` stops after the last epoch that fits in that wall
    time (the run resumes later, on this or another machine).
    """
    trainer = Trainer(model, train_set, config, test_set, out_dir, step_callback)
    return trainer.fit(resume=resume, overwrite=overwrite, max_minutes=max_minutes)

