"""An evaluation's partial file: what a long ``evaluate`` has finished, so a killed one resumes.

``evaluate(resume_file=PATH)`` writes, after each attack of each noise setting (all its
trials), the per-sample outcomes finished so far, and, while an attack runs, its finished
batches (the evaluation's, and an attack's own such as ZOO's, with the random state after
each: ``pni.resumable``; at most every 20 s), atomically, ``torch.save`` of tensors and
plain lists only, under a fingerprint of everything that decides them: the model's weights, the
images and labels, the attacks' parameters, trials and seeds, votes, batch size, noise
settings and cascade. A later call with the same file and the same fingerprint reuses the
finished attacks (the cascade's running worst case is rebuilt from them, so its later
attacks run on exactly the images they would have) and the running attack's finished
batches, and runs the rest; a file whose
fingerprint differs, or that cannot be read, is ignored and overwritten. The caller deletes
the file once the evaluation's results are written (``pni reproduce`` does).
"""
from __future__ import annotations

import hashlib
import io
import sys
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

PARTIAL_VERSION = 1


def fingerprint(model: nn.Module, x: Tensor, y: Tensor, settings: dict[str, Any]) -> str:
    """sha256 of the model's state (parameters and buffers), the images, the labels and the
    JSON of ``settings`` (attack parameters, trials, seeds, ...)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(_tensor_bytes(tensor))
    digest.update(_tensor_bytes(x))
    digest.update(_tensor_bytes(y))
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _tensor_bytes(tensor: Tensor) -> bytes:
    t = tensor.detach().cpu().contiguous()
    return str((t.dtype, tuple(t.shape))).encode() + t.view(-1).view(torch.uint8).numpy().tobytes()


Done = dict[str, dict[str, dict[str, Tensor]]]
Batches = dict[str, list[dict[str, Any]]]


def load_partial(path: str | Path | None, key: str) -> tuple[Done, Batches, float]:
    """The finished outcomes recorded in ``path`` (``{setting: {attack: {"fraction", "correct",
    extras...}}}``), the running attack's finished batches (``pni.resumable.BatchRecord``) and
    the wall seconds the evaluation has run so far, when its fingerprint is ``key``; else
    nothing (missing, unreadable or another evaluation's file: one warning line on stderr, as
    this evaluation will write over it)."""
    saved = read_partial(path)
    if saved is None:
        return {}, {}, 0.0
    if saved.get("key") != key:
        print(f"pni: warning: {path} holds the finished work of another evaluation (other model weights, "
              f"images or settings): not reused, and replaced by this one's", file=sys.stderr)
        return {}, {}, 0.0
    done, batches, progress = saved.get("done"), saved.get("batches"), recorded_progress(saved)
    return ((done if isinstance(done, dict) else {}), (batches if isinstance(batches, dict) else {}),
            progress[1] if progress else 0.0)


def save_partial(path: str | Path, key: str, done: Done, batches: Batches | None = None,
                 share_done: float | None = None, seconds: float | None = None,
                 head: dict[str, Any] | None = None) -> None:
    """Writes the finished outcomes ``done`` and the running attack's finished ``batches``
    under fingerprint ``key`` (atomically), with the share of the evaluation's work they
    stand for (``share_done``, 0-1), the wall ``seconds`` it has run (``partial_progress``:
    time estimates) and the evaluation's ``head`` (its attacks' parameters, trials, images,
    ...: ``pni.evaluation.partial`` reads the finished attacks back as an ``Evaluation``; kept
    as JSON text, so that nothing in it can make the file unreadable to a resume)."""
    from ..files import atomic_write

    buffer = io.BytesIO()
    torch.save({"version": PARTIAL_VERSION, "key": key, "done": done, "batches": batches or {},
                "share_done": share_done, "seconds": seconds,
                "head": None if head is None else json.dumps(head, sort_keys=True, default=str)}, buffer)
    atomic_write(buffer.getbuffer(), path, what="partial evaluation")


def partial_progress(path: str | Path) -> tuple[float, float] | None:
    """(share 0-1 of its evaluation's work, wall seconds spent on it) a partial file records,
    as its evaluation last counted them (forward+backward passes); None when unknown."""
    saved = read_partial(path)
    return None if saved is None else recorded_progress(saved)


def partial_attacks(path: str | Path | None) -> list[str]:
    """The attacks a partial file holds as finished, in any noise setting (its key unchecked:
    ``evaluate`` reuses them only under the same model, images and settings): for a time
    estimate before a resumed evaluation starts."""
    saved = read_partial(path)
    done = saved.get("done") if saved is not None else None
    if not isinstance(done, dict):
        return []
    return list(dict.fromkeys(name for attacks in done.values() if isinstance(attacks, dict) for name in attacks))


def read_partial(path: str | Path | None) -> dict[str, Any] | None:
    """A partial file's contents (``save_partial``'s fields); None when missing, torn or of
    another format version."""
    if path is None or not Path(path).is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file is ignored and overwritten
        return None
    return saved if isinstance(saved, dict) and saved.get("version") == PARTIAL_VERSION else None


def recorded_progress(saved: dict[str, Any]) -> tuple[float, float] | None:
    """(share 0-1 of the work done, wall seconds so far) a read partial file records; None when unknown."""
    share, seconds = saved.get("share_done"), saved.get("seconds")
    if not (isinstance(share, float) and 0.0 <= share <= 1.0):
        return None
    return share, (float(seconds) if isinstance(seconds, (int, float)) and seconds >= 0 else 0.0)
