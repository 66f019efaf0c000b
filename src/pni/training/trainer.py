"""Adversarial training with PNI: the min-max of Eq. 10-12 as a fast, resumable loop.

Inner max: PGD-Linf with the noise on (Eq. 12), labels = the model's own predictions on
the clean batch (no label leaking), random start, BatchNorm in eval mode while the
adversary runs. Outer min: ``w_clean * CE(clean) + w_adv * CE(adv)`` (Eq. 11) with SGD
momentum 0.9 Nesterov, a multi-step schedule and no weight decay on alpha (Sec. 3.1).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import distributed
from ..attacks import AttackError, pgd
from ..attacks._common import check_model_inputs
from ..attacks.gradient import pgd_unchecked
from ..config import TrainConfig, check_device, declared_precision, effective_precision
from ..config import replace as replace_config
from ..progress import counted, progress_bar
from .cuda_graphs import GraphedStep, configure_backends, graphs_supported
from ..data import BatchLoader, Dataset, subset_tensors, warn_missing_classes
from ..errors import PNIError
from ..evaluation.evaluator import correct_mask
from ..models import create_model, eval_mode
from ..noise import alpha_parameters, alpha_values, freeze_alphas, inject, noise_enabled, param_groups
from ..checkpoint import FORMAT, VERSION, CheckpointError, load_state, read_checkpoint
from ..models import model_meta
from ..seeding import SeedingError, mix_seed, rank_seed, rng_state, seed_everything, set_rng_state
from .run_folder import (
    RunExistsError,
    RunFolderError,
    RunFolderWriter,
    TrainingInterrupted,
    config_changes,
)
from .guard import LOSS_LIMIT, WEIGHT_LIMIT, first_diverged as _first_diverged, norms as _norms
from .guard import probe_loss as _probe_loss

__all__ = ["RunExistsError", "RunFolderError", "TrainResult",
           "Trainer", "TrainingError", "TrainingInterrupted", "build_model", "fit"]

StepCallback = Callable[[nn.Module, int, int], None]
Steps = Generator[None, None, Any]  # yields after every training step, returns the result


def drive(steps: Steps) -> Any:
    """Runs a step generator (``Trainer.fit_steps``, ``Trainer.epoch_steps``) to its end and
    returns its value: the plain, one-run loop."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value

class TrainingError(PNIError, RuntimeError):
    """A training run that cannot go on (diverged); the message names the parameter."""


@dataclass
class TrainResult:
    """What ``fit`` returns: the per-epoch metrics and where the run was written."""

    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    stopped_early: bool = False  # stopped by max_minutes before config.epochs
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (train_run sets it)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def build_model(config: TrainConfig, data: Dataset) -> nn.Module:
    """The model a config describes, normalized with the dataset's statistics, with noise.
    Its initial weights are drawn from ``config.seed`` alone (the global random state is
    left as it was): the same seed builds the same model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(config.model, num_classes=len(data.classes), width=config.width,
                             in_channels=data.image_shape[0], normalize=(data.mean, data.std))
        if config.location is not None:
            inject(model, config.location, config.granularity, config.init_alpha)
    return model


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
        check_device(config.validate().device)
        self.device = distributed.init(config.device)
        # auto resolved on this device, recorded in config.json and the checkpoint
        config = replace_config(config, precision=declared_precision(config.precision, self.device.type))
        self.config = config
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.step_callback = step_callback
        self.epoch_callback: Callable[[dict[str, Any]], None] | None = None  # f(record) per epoch
        if config.fixed_alpha is not None:
            freeze_alphas(model, config.fixed_alpha)
        configure_backends(self.device, effective_precision(config.precision, self.device.type),
                           torch.are_deterministic_algorithms_enabled(),
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
        self._check_data_fits()
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
        watched = [*self.net.parameters(), *alpha_parameters(self.net)]  # what the guard checks
        self._watched = list({id(p): p for p in watched}.values())
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self._note: str | None = None
        self.concurrent = 1  # runs training at once in this process (pni.training.concurrent sets it)
        self._changes: dict[str, list[Any]] = {}
        self._position: dict[str, Any] | None = None  # where a mid-epoch checkpoint stopped
        self._resumed = False
        # the run folder this trainer writes (None: no output folder)
        self.folder = RunFolderWriter(self.out_dir, self.rank, self.world_size) if self.out_dir is not None else None

    def _check_data_fits(self) -> None:
        """TrainingError (one line) when the model's weights are not finite or the training
        images or labels do not fit it (one probe forward; the random state is kept)."""
        labels = self.loader._labels
        probe = torch.stack([labels.argmin(), labels.argmax()])  # the smallest and largest label
        images, labels = self.loader._images[probe], labels[probe]
        x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        try:
            check_model_inputs(self.net, x.to(self.device), labels.to(self.device))
        except AttackError as error:
            raise TrainingError(f"the training data does not fit the model: {error}") from None

    # --- the step -------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for every pass of the step when ``config.precision`` is bf16."""
        if self.config.precision != "bf16":  # bf16 autocasts on every device
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

    def _input_noise(self, x: Tensor) -> Tensor:
        """Gaussian data augmentation ``x + N(0, input_noise^2)`` in [0, 1] pixel space, not
        clipped (Cohen et al. 2019: the training that randomized smoothing certifies)."""
        sigma = self.config.input_noise
        return x if not sigma else x + sigma * torch.randn_like(x)

    def step_losses(self, x: Tensor, y: Tensor, adversarial: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective of Eq. 11 on one batch and its statistics, as device tensors, with no
        host synchronization (so ``pni.training.cuda_graphs`` can record it)."""
        cfg = self.config
        self.model.train()
        with self._autocast():
            logits_clean = self.forward(self._input_noise(x))
            loss_clean = F.cross_entropy(logits_clean, y)
            stats = {"loss_clean": loss_clean.detach(),
                     "acc_clean": (logits_clean.detach().argmax(1) == y).float().mean()}
            if adversarial:
                # The clean forward is reused: its predictions are the attack's labels.
                predicted = logits_clean.detach().argmax(1)
                x_adv = self._adversarial_examples(x, predicted)
                logits_adv = self.forward(self._input_noise(x_adv))
                loss_adv = F.cross_entropy(logits_adv, y)
                loss = cfg.w_clean * loss_clean + cfg.w_adv * loss_adv
                stats["loss_adv"] = loss_adv.detach()
                stats["acc_adv"] = (logits_adv.detach().argmax(1) == y).float().mean()
            else:
                loss = loss_clean
        return loss.float(), stats

    def _state_ok(self) -> Tensor:
        """A boolean tensor: every parameter and alpha finite with an L2 norm <= WEIGHT_LIMIT
        (no host synchronization)."""
        norms = _norms([p.detach() for p in self._watched])
        return (torch.stack([n.float() for n in norms]) <= WEIGHT_LIMIT).all()

    def _finite_state(self, loss: Tensor) -> Tensor:
        """A boolean tensor: the loss finite and <= LOSS_LIMIT, and ``_state_ok`` after the
        update (no host synchronization: recorded inside the CUDA graph)."""
        return (loss.detach() <= LOSS_LIMIT) & self._state_ok()

    def train_step_tensors(self, x: Tensor, y: Tensor, adversarial: bool) -> dict[str, Tensor]:
        """One eager update on one batch; its losses and accuracies as device tensors. A
        non-finite or exploding loss raises before the update, a non-finite or diverged
        parameter or alpha right after it (the divergence guard, see WEIGHT_LIMIT)."""
        loss, stats = self.step_losses(x, y, adversarial)
        if not bool(loss.detach() <= LOSS_LIMIT):
            culprit = _first_diverged(self.net) or "none (the loss itself: inputs, labels or lr)"
            raise TrainingError(f"non-finite or exploding loss ({loss.item():.4g}, limit {LOSS_LIMIT:g}); "
                                f"first non-finite or diverged value: {culprit}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if not bool(self._state_ok()):
            raise TrainingError(f"non-finite or diverged {_first_diverged(self.net)} after the update "
                                f"(the last good checkpoint is kept)")
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
            culprit = _first_diverged(self.net) or f"the loss (non-finite or above {LOSS_LIMIT:g})"
            raise TrainingError(f"non-finite or diverged training state after a step; first bad value: "
                                f"{culprit} (the last good checkpoint is kept)")

    def _check_probe(self, epoch: int) -> None:
        """Before an epoch's state is saved: TrainingError unless the clean loss of a fixed probe
        batch (the first training images, eval mode, random state kept) is <= LOSS_LIMIT."""
        loss = _probe_loss(self.net, self.loader._images, self.loader._labels, self.device)
        bad = not loss <= LOSS_LIMIT
        if self.world_size > 1:
            bad = bool(distributed.all_reduce_sum([int(bad)])[0])
        if bad:
            raise TrainingError(f"diverged in epoch {epoch}: the state after it gives a clean loss of "
                                f"{loss:.4g} on a probe batch (limit {LOSS_LIMIT:g}); it was not saved, "
                                f"the last good checkpoint is kept")

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
        """One epoch (from the batch a mid-epoch checkpoint stopped at, after a resume); after
        each batch, a stop signal or ``save_every_minutes`` writes a mid-epoch checkpoint."""
        return drive(self.epoch_steps(epoch))

    def epoch_steps(self, epoch: int) -> Steps:
        """``run_epoch`` as a generator: yields after every batch, returns the epoch's record."""
        cfg = self.config
        adversarial = cfg.adversarial and epoch >= cfg.warmup_epochs
        self.loader.set_epoch(epoch)
        position, self._position = self._position or {}, None
        sums = {k: v.to(self.device) for k, v in position.get("sums", {}).items()}
        count, first = position.get("count", 0), position.get("batch", 0)
        started = time.perf_counter() - position.get("seconds", 0.0)
        batches = iter(self.loader)
        for _ in range(first):  # skipped batches redraw their augmentation: the same stream
            next(batches)
        pending: Tensor | None = None
        bar = progress_bar(len(self.loader), f"epoch {epoch + 1}/{cfg.epochs}", "batch", initial=first,
                           enabled=cfg.progress and self.is_main)  # tqdm on a terminal, else a line per few %
        for step, (x, y) in enumerate(counted(batches, bar), start=first):
            if self.step_callback is not None:
                self.step_callback(self.net, epoch, step)
            stats, finite = self._step(x, y, adversarial)
            self._check_finite(pending)
            pending = finite
            n = len(y)
            for key, value in stats.items():  # summed on the device: no per-step copy
                sums[key] = sums[key] + value.float() * n if key in sums else value.float() * n
            count += n
            if step % 25 == 0 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{float(stats['loss']):.3f}")
            if self.folder is not None and self.folder.pause_requested():
                self._check_finite(pending)  # a bad state is never saved
                pending = None
                position = {"batch": step + 1, "count": count, "order": self.loader._rank_indices(),
                            "sums": {k: v.detach().cpu() for k, v in sums.items()},
                            "seconds": time.perf_counter() - started}
                self._save(epoch, position)
                self.folder.raise_if_stopped(epoch, step + 1, len(self.loader))
            yield
        self._check_finite(pending)
        totals = {key: float(value) for key, value in sums.items()}
        if self.world_size > 1:  # metrics over the global batch; BN statistics agree again
            keys = sorted(totals)
            summed = distributed.all_reduce_sum([count, *(totals[k] for k in keys)])
            count, totals = int(summed[0]), dict(zip(keys, summed[1:]))
            if not cfg.sync_bn:
                distributed.average_buffers(self.net)
        lr = self.optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # resumed after the last batch: no step in this process
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        record: dict[str, Any] = {"epoch": epoch + 1, "adversarial": adversarial, "lr": lr}
        record.update({f"train_{k}": v / max(count, 1) for k, v in totals.items()})
        record["train_seconds"] = time.perf_counter() - started
        if self.concurrent > 1:  # the wall seconds were shared with other runs
            record["concurrent"] = self.concurrent
        record.update(self._evaluate())
        record["alphas"] = alpha_values(self.net)
        return record

    # --- the run's state in a checkpoint -----------------------------------------------

    def checkpoint(self, epoch: int, position: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint of the unwrapped model (loadable by one process); under torchrun a
        collective call: every rank's random state (and position) is gathered (``rng_ranks``).
        ``position``: where in epoch ``epoch + 1`` a mid-epoch checkpoint stops (batch, data
        order, partial sums). Wall times (and how many runs shared them) are left out: same
        seed, same bytes."""
        gathered = distributed.all_gather_object((rng_state(self.device if self.world_size > 1 else None),
                                                  position))
        last = self.history[-1] if self.history else {}
        metrics = {k: v for k, v in last.items() if k not in ("train_seconds", "concurrent")}
        checkpoint = {
            "format": FORMAT, "version": VERSION, "epoch": epoch,
            "model": self.net.state_dict(), "model_meta": model_meta(self.net),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": gathered[0][0], "world_size": self.world_size, "config": self.config.to_dict(),
            "dataset": self.dataset_name, "metrics": metrics,
        }
        if position is not None:
            checkpoint["position"] = gathered[0][1]
        if self.world_size > 1:
            checkpoint["rng_ranks"] = [rng for rng, _ in gathered]
            if position is not None:
                checkpoint["position_ranks"] = [pos for _, pos in gathered]
        return checkpoint

    def restore(self, path: Path) -> None:
        """Continues from a checkpoint; rank 0 reads it (and the log) and hands it to every rank.

        The checkpoint's config must equal this run's but for ``SAFE_CHANGES`` (those
        are logged as ``config_changes``). The log is trimmed to the checkpoint's epoch. A
        checkpoint saved by the same number of processes restores each rank's random state
        exactly; from another number, the per-rank streams are reseeded from (seed, epoch,
        rank), and the next epoch's log record says so (``note``).
        """
        checkpoint = distributed.on_main(lambda: read_checkpoint(path, resume=True))
        self._changes = config_changes(checkpoint.get("config", {}), self.config.to_dict(),
                                       f"checkpoint {str(path)!r}")
        self.start_epoch = int(checkpoint["epoch"])
        if self.config.epochs < self.start_epoch + ("position" in checkpoint):
            raise RunFolderError(f"cannot resume {str(path)!r} with epochs={self.config.epochs} (--epochs): "
                                 f"it holds {self.start_epoch} epochs{' and part of the next' if 'position' in checkpoint else ''}; "
                                 f"pass --epochs {self.start_epoch + 1} or more (nothing was changed)")
        saved_world = int(checkpoint.get("world_size", 1))
        positions = checkpoint.get("position_ranks") or [checkpoint.get("position")]
        if positions[0] is not None:
            self._position = self._check_position(positions, saved_world, path)
        self.history = [] if self.folder is None else self.folder.trim_log(self.start_epoch)
        load_state(self.net, checkpoint["model"], source=f"checkpoint {str(path)!r}")
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        states = checkpoint.get("rng_ranks") or [checkpoint["rng"]]
        self._resumed = True
        if saved_world == self.world_size and len(states) == self.world_size:
            try:
                set_rng_state(states[self.rank], self.device if self.world_size > 1 else None)
            except SeedingError as error:
                raise CheckpointError(f"checkpoint {str(path)!r}: {error}") from None
        else:
            seed_everything(mix_seed(self.config.seed, self.start_epoch, self.rank))
            self._note = (f"resumed a checkpoint written by {saved_world} process(es) with "
                          f"{self.world_size}: random streams reseeded from (seed, epoch, rank)")
            if self.config.progress and self.is_main:
                tqdm.write(self._note)

    def _check_position(self, positions: list[dict[str, Any]], saved_world: int,
                        path: Path) -> dict[str, Any]:
        """This rank's mid-epoch position, checked against this run's data order."""
        if saved_world != self.world_size or len(positions) != self.world_size:
            raise RunFolderError(f"checkpoint {str(path)!r} stopped mid-epoch with {saved_world} "
                                 f"process(es); resume it with the same number of processes")
        position = positions[self.rank]
        self.loader.set_epoch(self.start_epoch)
        order = self.loader._rank_indices()
        if not torch.equal(order, position["order"].to(order.dtype)) or position["batch"] > len(self.loader):
            raise RunFolderError(f"checkpoint {str(path)!r} stopped mid-epoch in another data order "
                                 f"than this run's (another dataset, subset or batch size?)")
        return position

    def _save(self, epoch: int, position: dict[str, Any] | None = None) -> None:
        """A checkpoint into the run folder (collective under torchrun: the random states are
        gathered): at the end of an epoch with its log line, mid-epoch at ``position``."""
        assert self.folder is not None
        self.folder.save(self.checkpoint(epoch, position), self.history, mid_epoch=position is not None)

    def _out_of_time(self, started: float, max_minutes: float | None) -> bool:
        """True when another epoch, as long as the longest so far, would end past the limit."""
        if max_minutes is None or not self._epoch_seconds:
            return False
        return time.perf_counter() - started + max(self._epoch_seconds) > 60 * max_minutes

    def fit(self, resume: bool = False, overwrite: bool = False, max_minutes: float | None = None,
            save_every_minutes: float | None = None) -> TrainResult:
        """Trains from ``start_epoch`` to ``config.epochs``; with ``max_minutes``, stops after
        the last epoch that fits in that time (``TrainResult.stopped_early``; resume later).
        With an output folder, SIGTERM/SIGINT write a checkpoint after the current batch and
        raise TrainingInterrupted; ``save_every_minutes`` also writes mid-epoch checkpoints.
        The output folder is locked for the whole call: one writer per run folder."""
        return drive(self.fit_steps(resume, overwrite, max_minutes, save_every_minutes))

    def fit_steps(self, resume: bool = False, overwrite: bool = False, max_minutes: float | None = None,
                  save_every_minutes: float | None = None, catch_signals: bool = True) -> Steps:
        """``fit`` as a generator that yields after every training step and returns the
        TrainResult: several runs advance in turn in one process (``pni.training.concurrent``).
        ``catch_signals=False``: the caller installs ``self.folder.stop`` (one handler for all runs)."""
        try:
            return (yield from self._fit(resume, overwrite, max_minutes, save_every_minutes, catch_signals))
        except Exception as error:
            if self.folder is not None:
                self.folder.explain(error)
            raise
        finally:
            if self.folder is not None:
                self.folder.close()

    def _fit(self, resume: bool, overwrite: bool, max_minutes: float | None,
             save_every_minutes: float | None, catch_signals: bool = True) -> Steps:
        cfg = self.config
        started = time.perf_counter()
        self._epoch_seconds: list[float] = []
        folder = self.folder
        if folder is not None:
            if folder.open(resume, overwrite, save_every_minutes):
                self.restore(folder.checkpoint_path)
            folder.write_config(self.config.to_dict())
        if not self._resumed:
            seed_everything(rank_seed(cfg.seed, self.rank))
        with (folder.stop.installed(active=catch_signals) if folder is not None else contextlib.nullcontext()):
            for epoch in range(self.start_epoch, cfg.epochs):
                if self._out_of_time(started, max_minutes):
                    return TrainResult(self.history, self.out_dir, stopped_early=True)
                epoch_started = time.perf_counter()
                record = yield from self.epoch_steps(epoch)
                if self._note is not None:
                    record["note"], self._note = self._note, None
                if self._changes:
                    record["config_changes"], self._changes = self._changes, {}
                self.history.append(record)
                if folder is not None:
                    self._check_probe(epoch + 1)  # a diverged state never becomes the checkpoint
                    self._save(epoch + 1)
                if self.epoch_callback is not None and self.is_main:
                    self.epoch_callback(record)
                if cfg.progress and self.is_main:
                    tqdm.write(_epoch_line(record))
                self._epoch_seconds.append(time.perf_counter() - epoch_started)
                if folder is not None and folder.stop_flags(False)[0]:
                    folder.raise_if_stopped(epoch + 1, 0, len(self.loader))
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
        step_callback: StepCallback | None = None, max_minutes: float | None = None,
        save_every_minutes: float | None = None,
        epoch_callback: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Adversarial training of ``model`` in place (the paper's Eq. 10-12); returns the history.

    Args:
        model: the network (usually ``pni.inject``-ed); images in [0, 1].
        train_set: a pni Dataset or an ``(images, labels)`` pair.
        config: every setting: epochs, optimizer, eps / PGD steps, clean/adversarial weights.
        test_set: held-out data for the per-epoch clean and PGD accuracy (default None: none).
        out_dir: run folder: per epoch ``train_log.jsonl`` and ``checkpoint.pt`` (default None).
        resume: continue exactly from ``out_dir``'s checkpoint, also mid-epoch (default False).
        overwrite: replace a run already in ``out_dir`` (default False).
        step_callback: ``f(model, epoch, step)`` after every update (default None).
        max_minutes: stop after the last epoch that fits in this wall time (default None).
        save_every_minutes: also write mid-epoch checkpoints this often (default None).
        epoch_callback: ``f(record)`` with every epoch's log record, after it is written
            (rank 0 only; e.g. ``pni.training.tensorboard_sink.TensorBoardSink``; default None).

    Returns:
        TrainResult: per-epoch ``history``, ``out_dir`` and ``stopped_early``.

    Raises:
        TrainingError: a non-finite or diverged loss, weight or alpha (that state is never saved).
        RunFolderError: ``out_dir`` holds another run (RunExistsError) or none to resume.

    Example:
        >>> config = pni.TrainConfig(model="lenet5", epochs=1, steps=1, eval_subset=0, progress=False)
        >>> model = pni.inject(pni.create_model("lenet5"), "W")
        >>> pni.fit(model, pni.load_dataset("mnist-sample", "train").subset(64), config).last["epoch"]
        1
    """
    trainer = Trainer(model, train_set, config, test_set, out_dir, step_callback)
    trainer.epoch_callback = epoch_callback
    return trainer.fit(resume=resume, overwrite=overwrite, max_minutes=max_minutes,
                       save_every_minutes=save_every_minutes)

