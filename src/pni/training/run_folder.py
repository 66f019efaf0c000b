"""The run folder of ``pni train``, written so that a crash at any instant loses nothing.

``checkpoint.pt`` holds the last good state, ``checkpoint.prev.pt`` the one before it (so a
bad save can always be undone), ``train_log.jsonl`` one JSON line per finished epoch and
``config.json`` the config. At the end of an epoch the log (with the new line) is written
and fsynced *before* the checkpoint it describes; resume trims the log to the checkpoint's
epoch, so no line is ever lost or duplicated. Every file goes through a temporary file,
fsync and rename (``pni.files.atomic_write``): a kill leaves at most a temporary file,
which the next start or resume removes. Files follow the umask.

Also here: the config comparison of a resume, the folder's one-writer lock, and
``CheckpointedRun``, the trainer's checkpoint / resume / stop methods.
"""
from __future__ import annotations

import dataclasses
import io
import json
import secrets
import shutil
import signal
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..checkpoint import FORMAT, VERSION, CheckpointError, load_state, read_checkpoint
from ..files import atomic_write, temp_files
from ..models import model_meta
from ..runs import CHECKPOINT, CONFIG, DATA_LOCATION, OVERWRITTEN, PREVIOUS_CHECKPOINT, TRAIN_LOG, data_location
from ..config import TrainConfig, migrate_precision
from ..errors import PNIError
from ..folder_lock import FolderLock
from ..seeding import SeedingError, mix_seed, rng_state, seed_everything, set_rng_state
from .stop_signal import StopRequest, exit_code


# Fields a resume may change: they do not change the numbers of the run (or only extend it).
SAFE_CHANGES: tuple[str, ...] = ("epochs", "progress", "device", "cuda_graphs", "compile",
                                 "cudnn_benchmark", "channels_last", "fold_bn")


class RunFolderError(PNIError, RuntimeError):
    """An output folder that cannot hold, continue or replace a run; the message names it."""


class RunExistsError(RunFolderError):
    """The output folder already holds another run."""


def fault_point(name: str) -> None:
    """Called at each point where a crash must lose nothing ("log-write" and
    "checkpoint-write" halfway through the bytes, "between-log-and-checkpoint"); a no-op
    that tests replace to raise or ``os._exit`` there."""


# --- preparing the folder ------------------------------------------------------------------

@dataclass
class Prepared:
    """What ``prepare`` found: whether there is a checkpoint to resume, where an overwritten
    run waits until the new one has a checkpoint."""

    resume: bool
    aside: Path | None = None


def lock_folder(folder: Path) -> FolderLock:
    """One writer per run folder: ``folder``'s lock (``pni.folder_lock``), held until released
    or the process ends; a one-line RunFolderError naming the holder's pid when it is taken."""
    _make_folder(folder)  # a file, or a folder that cannot be written: one line first
    lock = FolderLock(folder)
    if not lock.acquire():
        raise RunFolderError(f"output folder {str(folder)!r} is being written by another process "
                             f"(pid {lock.holder()}); one writer per run folder: wait for it to end "
                             f"or choose another --out")
    return lock


def prepare(folder: Path, resume: bool, overwrite: bool) -> Prepared:
    """Creates or checks ``folder``, removes stale temporary files, and decides: resume (a
    checkpoint is there), start afresh (nothing there), or move an old run aside
    (``overwrite``). Anything else is a one-line RunFolderError."""
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: continue the run or replace it")
    _make_folder(folder)
    remove_temp_files(folder)
    has_checkpoint, has_log = (folder / CHECKPOINT).exists(), (folder / TRAIN_LOG).exists()
    if resume:
        if has_checkpoint:
            return Prepared(resume=True)
        if has_log:
            raise RunFolderError(f"cannot resume {str(folder)!r}: it holds {TRAIN_LOG} but no {CHECKPOINT} "
                                 f"(the run stopped before its first checkpoint); start afresh with "
                                 f"--overwrite")
        raise RunFolderError(f"nothing to resume in {str(folder)!r}: it holds no {CHECKPOINT}; "
                             f"leave out --resume to start a run there")
    if not (has_checkpoint or has_log):
        return Prepared(resume=False)
    if not overwrite:
        in_use = ", ".join(name for name, there in ((CHECKPOINT, has_checkpoint), (TRAIN_LOG, has_log)) if there)
        raise RunExistsError(f"output folder {str(folder)!r} already holds a run ({in_use}); pass "
                             f"resume=True (--resume) to continue it or overwrite=True (--overwrite) "
                             f"to replace it")
    return Prepared(resume=False, aside=_move_aside(folder))


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"output folder {str(folder)!r} is a file, not a folder; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".pni-write-test.{secrets.token_hex(4)}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise RunFolderError(f"output folder {str(folder)!r} cannot be written: "
                             f"{error.strerror or error}") from None


def remove_temp_files(folder: Path) -> list[Path]:
    """Removes the temporary files a killed process left behind; returns them."""
    stale = [p for name in (CHECKPOINT, PREVIOUS_CHECKPOINT, TRAIN_LOG, CONFIG) for p in temp_files(folder / name)]
    stale += [p for p in (folder / "train_log.jsonl.tmp",) if p.exists()]  # written by pni < 0.2
    for path in stale:
        with suppress(FileNotFoundError):
            path.unlink()
    return stale


def _move_aside(folder: Path) -> Path:
    """Moves the run files into ``.overwritten.<token>/``, removed by ``drop_overwritten`` once
    the new run has written its first checkpoint (a crash before that keeps the old run)."""
    aside = folder / f"{OVERWRITTEN}.{secrets.token_hex(4)}"
    aside.mkdir()
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT, TRAIN_LOG, CONFIG):
        if (folder / name).exists():
            (folder / name).replace(aside / name)
    return aside


def drop_overwritten(folder: Path) -> None:
    """Deletes the runs ``--overwrite`` moved aside (called after the first checkpoint)."""
    for aside in folder.glob(f"{OVERWRITTEN}.*"):
        shutil.rmtree(aside, ignore_errors=True)


# --- the log -------------------------------------------------------------------------------

def read_log(folder: Path) -> list[dict[str, Any]]:
    """The epoch records of ``train_log.jsonl`` ([] when there is none); a line that is not
    a JSON object with an integer ``epoch`` is a one-line RunFolderError naming it."""
    path = folder / TRAIN_LOG
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise RunFolderError(f"cannot read {str(path)!r}: {reason}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunFolderError(f"{str(path)!r} line {number} is not valid JSON ({error.msg}); repair "
                                 f"or delete that line, or start afresh with --overwrite") from None
        if not isinstance(record, dict) or type(record.get("epoch")) is not int:
            raise RunFolderError(f"{str(path)!r} line {number} is not an epoch record (a JSON object "
                                 f"with an integer 'epoch'); repair or delete that line")
        records.append(record)
    return records


def trim_log(folder: Path, epoch: int) -> list[dict[str, Any]]:
    """The log's records up to ``epoch`` (the checkpoint's); the file is rewritten without the
    later ones (written by a run killed between its log and its checkpoint)."""
    records = read_log(folder)
    kept = [r for r in records if r["epoch"] <= epoch]
    if len(kept) != len(records):
        write_log(folder, kept)
    return kept


def write_log(folder: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(record) + "\n" for record in history).encode()
    atomic_write(text, folder / TRAIN_LOG, "log", midway=lambda: fault_point("log-write"), error=CheckpointError)


def write_config(folder: Path, config: dict[str, Any]) -> None:
    """``config.json``: the config's fields, where its data folder was (``runs.data_location``)
    and the code that trained it (``provenance.with_code``); neither record is a field."""
    from ..provenance import with_code

    config = {**config, DATA_LOCATION: data_location(config.get("data_dir"))}

    atomic_write((json.dumps(with_code(config), indent=2) + "\n").encode(), folder / CONFIG, "config",
                 error=CheckpointError)


# --- checkpoints ---------------------------------------------------------------------------

def save_checkpoint(folder: Path, checkpoint: dict[str, Any]) -> Path:
    """Writes ``checkpoint.pt``; the one it replaces becomes ``checkpoint.prev.pt`` (a hard
    link, so ``checkpoint.pt`` exists at every instant)."""
    path = folder / CHECKPOINT
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    if path.exists():
        _keep_previous(path, folder / PREVIOUS_CHECKPOINT)
    return atomic_write(buffer.getbuffer(), path, "checkpoint", midway=lambda: fault_point("checkpoint-write"),
                        error=CheckpointError)


def _keep_previous(path: Path, previous: Path) -> None:
    if previous.exists() and previous.samefile(path):
        return  # already kept (a save killed after this step); a rename onto it would do nothing
    tmp = previous.with_name(f".{previous.name}.{secrets.token_hex(6)}.tmp")
    try:
        try:
            tmp.hardlink_to(path)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, tmp)
        tmp.replace(previous)
    except OSError as error:
        with suppress(OSError):
            tmp.unlink()
        raise CheckpointError(f"cannot keep the previous checkpoint as {str(previous)!r}: "
                              f"{error.strerror or error}") from None


def write_epoch(folder: Path, history: list[dict[str, Any]], checkpoint: dict[str, Any]) -> None:
    """The end of an epoch: the log with its new line first (fsynced), then the checkpoint."""
    write_log(folder, history)
    fault_point("between-log-and-checkpoint")
    save_checkpoint(folder, checkpoint)


# --- resuming ------------------------------------------------------------------------------

def config_changes(saved: dict[str, Any], requested: dict[str, Any], source: str) -> dict[str, list[Any]]:
    """``{field: [saved, requested]}`` for the fields a resume changes; raises RunFolderError
    listing every other differing field (those change what the run computes)."""
    defaults = dataclasses.asdict(TrainConfig())  # a field newer than the run: its default
    saved = migrate_precision(saved)
    saved.setdefault("precision", "float32")  # a run from before precision and tf32/bf16: float32
    saved = {name: saved.get(name, defaults.get(name)) for name in requested}
    differing = {name: [saved[name], requested[name]] for name in requested
                 if saved[name] != requested[name]}
    refused = {k: v for k, v in differing.items() if k not in SAFE_CHANGES}
    if refused:
        listed = ", ".join(f"{k} ({v[0]!r} -> {v[1]!r})" for k, v in refused.items())
        raise RunFolderError(f"cannot resume from {source}: the config differs in {listed}; only "
                             f"{', '.join(SAFE_CHANGES)} may change on resume (start a new run in "
                             f"another --out, or --overwrite)")
    return differing


# --- the trainer's checkpoints ----------------------------------------------------------

class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped the run after a batch; a checkpoint was written first.
    ``exit_code`` is the shell's status for that signal (143, 130)."""

    def __init__(self, signum: int, epoch: int, batch: int, batches: int, path: Path) -> None:
        name = signal.Signals(signum).name
        where = (f"after epoch {epoch}" if batch == 0
                 else f"in epoch {epoch + 1} after batch {batch} of {batches}")
        super().__init__(f"stopped by {name} {where}; checkpoint written: {path}; "
                         f"continue with --resume")
        self.signum, self.exit_code = signum, exit_code(signum)


class CheckpointedRun:
    """The checkpoint, resume and stop side of ``pni.training.Trainer`` (a mixin: it uses the
    trainer's model, optimizer, scheduler, loader, config and history). Under torchrun rank
    0 is the only writer; gathering the random states is collective."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loader: Any
    config: Any
    device: torch.device
    rank: int
    world_size: int
    is_main: bool
    out_dir: Path | None
    dataset_name: str
    history: list[dict[str, Any]]
    start_epoch: int
    _note: str | None
    _changes: dict[str, list[Any]]
    _position: dict[str, Any] | None
    _resumed: bool
    _overwriting: bool
    _aside: Path | None
    _lock: FolderLock | None
    _stop: StopRequest
    _save_every: float | None
    _last_save: float

    def _stop_flags(self, due: bool) -> tuple[bool, bool]:
        """(stop, save now): a caught signal on any rank, rank 0's save-every clock."""
        stop = self._stop.signum is not None
        if self.world_size > 1:
            stops, dues = distributed.all_reduce_sum([stop, due and self.is_main])
            if stops and not stop:
                self._stop.signum = int(signal.SIGTERM)
            return bool(stops), bool(dues)
        return stop, due

    def _pause_requested(self) -> bool:
        """True when a mid-epoch checkpoint is due: a stop signal, or ``save_every_minutes``."""
        if self.out_dir is None:
            return False
        due = self._save_every is not None and time.monotonic() - self._last_save >= 60 * self._save_every
        stop, due = self._stop_flags(due)
        return stop or due

    def _raise_if_stopped(self, epoch: int, batch: int) -> None:
        if self._stop.signum is not None:
            assert self.out_dir is not None
            raise TrainingInterrupted(self._stop.signum, epoch, batch, len(self.loader),
                                      self.out_dir / CHECKPOINT)

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
        out_dir = self.out_dir
        epoch = self.start_epoch
        self.history = [] if out_dir is None else distributed.on_main(lambda: trim_log(out_dir, epoch))
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
        """Writes a checkpoint (rank 0; the gathering is collective): at the end of an epoch
        the log first, then the checkpoint; mid-epoch only the checkpoint."""
        assert self.out_dir is not None
        checkpoint = self.checkpoint(epoch, position)
        if self.is_main:
            if position is None:
                write_epoch(self.out_dir, self.history, checkpoint)
            else:
                save_checkpoint(self.out_dir, checkpoint)
            if self._overwriting:  # the new run has its first checkpoint: the old one can go
                drop_overwritten(self.out_dir)
                self._overwriting = False
        distributed.barrier()
        self._last_save = time.monotonic()

    def _prepare_out_dir(self, resume: bool, overwrite: bool) -> None:
        """Checks the output folder (rank 0), resumes from its checkpoint when asked, and
        writes ``config.json``."""
        assert self.out_dir is not None
        out_dir = self.out_dir

        def locked_prepare() -> Prepared:
            self._lock = lock_folder(out_dir)  # released by Trainer.fit
            return prepare(out_dir, resume, overwrite)

        prepared = distributed.on_main(locked_prepare)
        self._overwriting, self._aside = overwrite, prepared.aside
        if prepared.resume:
            self.restore(out_dir / CHECKPOINT)
        if self.is_main:
            write_config(out_dir, self.config.to_dict())


__all__ = ["SAFE_CHANGES", "RunFolderError", "RunExistsError",
           "Prepared", "prepare", "lock_folder", "read_log", "trim_log", "write_log", "write_config", "save_checkpoint",
           "write_epoch", "config_changes", "remove_temp_files",
           "drop_overwritten", "TrainingInterrupted", "CheckpointedRun", "fault_point"]
