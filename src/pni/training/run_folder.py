"""The run folder of ``pni train``, written so that a crash at any instant loses nothing.

``checkpoint.pt`` holds the last good state, ``checkpoint.prev.pt`` the one before it (so a
bad save can always be undone), ``train_log.jsonl`` one JSON line per finished epoch and
``config.json`` the config. At the end of an epoch the log (with the new line) is written
and fsynced *before* the checkpoint it describes; resume trims the log to the checkpoint's
epoch, so no line is ever lost or duplicated. Every file goes through a temporary file,
fsync and rename (``pni.files.atomic_write``): a kill leaves at most a temporary file,
which the next start or resume removes. Files follow the umask.

Also here: the config comparison of a resume, the folder's one-writer lock, and
``RunFolderWriter``, the run folder a ``Trainer`` owns (lock, config, stop signal, saves).
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

from .. import distributed
from ..checkpoint import CheckpointError
from ..files import atomic_write, json_text, temp_files
from ..runs import CHECKPOINT, CONFIG, DATA_LOCATION, OVERWRITTEN, PREVIOUS_CHECKPOINT, TRAIN_LOG, data_location
from ..config import TrainConfig, migrate_precision
from ..errors import PNIError
from ..folder_lock import FolderLock
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

    atomic_write(json_text(with_code(config)).encode(), folder / CONFIG, "config",
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


class RunFolderWriter:
    """The run folder of one training run, owned by its ``Trainer``: the folder's lock, the
    check of what it holds (``prepare``), ``config.json``, the stop signal and the save-every
    clock, and writing each checkpoint (at the end of an epoch the log first). Under
    torchrun rank 0 is the only writer; ``stop_flags`` and ``save`` are collective."""

    def __init__(self, out_dir: Path, rank: int = 0, world_size: int = 1) -> None:
        self.out_dir = out_dir
        self.rank, self.world_size, self.is_main = rank, world_size, rank == 0
        self.stop = StopRequest()           # replaced by train_concurrently: one handler for all runs
        self.save_every: float | None = None
        self.last_save = time.monotonic()
        self.overwriting = False
        self.aside: Path | None = None      # where an overwritten run waits
        self._lock: FolderLock | None = None

    def open(self, resume: bool, overwrite: bool, save_every_minutes: float | None = None) -> bool:
        """Locks the folder and checks what it holds (rank 0; ``prepare``); True when there is
        a checkpoint to resume from (``checkpoint_path``)."""
        self.save_every, self.last_save = save_every_minutes, time.monotonic()
        out_dir = self.out_dir

        def locked_prepare() -> Prepared:
            self._lock = lock_folder(out_dir)  # released by close()
            return prepare(out_dir, resume, overwrite)

        prepared = distributed.on_main(locked_prepare)
        self.overwriting, self.aside = overwrite, prepared.aside
        return prepared.resume

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def write_config(self, config: dict[str, Any]) -> None:
        if self.is_main:
            write_config(self.out_dir, config)

    def trim_log(self, epoch: int) -> list[dict[str, Any]]:
        """The log's records up to the resumed checkpoint's ``epoch`` (read on rank 0, handed to all)."""
        return distributed.on_main(lambda: trim_log(self.out_dir, epoch))

    def stop_flags(self, due: bool) -> tuple[bool, bool]:
        """(stop, save now): a caught signal on any rank, rank 0's save-every clock."""
        stop = self.stop.signum is not None
        if self.world_size > 1:
            stops, dues = distributed.all_reduce_sum([stop, due and self.is_main])
            if stops and not stop:
                self.stop.signum = int(signal.SIGTERM)
            return bool(stops), bool(dues)
        return stop, due

    def pause_requested(self) -> bool:
        """True when a mid-epoch checkpoint is due: a stop signal, or ``save_every_minutes``."""
        due = self.save_every is not None and time.monotonic() - self.last_save >= 60 * self.save_every
        stop, due = self.stop_flags(due)
        return stop or due

    def raise_if_stopped(self, epoch: int, batch: int, batches: int) -> None:
        if self.stop.signum is not None:
            raise TrainingInterrupted(self.stop.signum, epoch, batch, batches, self.checkpoint_path)

    def save(self, checkpoint: dict[str, Any], history: list[dict[str, Any]], mid_epoch: bool) -> None:
        """Writes ``checkpoint`` (rank 0): at the end of an epoch the log (``history``) first,
        then the checkpoint; mid-epoch only the checkpoint. The first checkpoint of a run that
        replaces another lets the old one go."""
        if self.is_main:
            if mid_epoch:
                save_checkpoint(self.out_dir, checkpoint)
            else:
                write_epoch(self.out_dir, history, checkpoint)
            if self.overwriting:
                drop_overwritten(self.out_dir)
                self.overwriting = False
        distributed.barrier()
        self.last_save = time.monotonic()

    def explain(self, error: Exception) -> None:
        """Adds where the replaced run is kept to a one-line error of a run that overwrote it."""
        if self.overwriting and self.aside and [type(a) for a in error.args] == [str]:
            error.args = (f"{error.args[0]}; the replaced run is kept in {self.aside}",)

    def close(self) -> None:
        """Releases the folder's lock."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None


__all__ = ["SAFE_CHANGES", "RunFolderError", "RunExistsError",
           "Prepared", "prepare", "lock_folder", "read_log", "trim_log", "write_log", "write_config", "save_checkpoint",
           "write_epoch", "config_changes", "remove_temp_files",
           "drop_overwritten", "TrainingInterrupted", "RunFolderWriter", "fault_point"]
