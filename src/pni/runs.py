"""The run folder's file names and their readers, in one place.

A ``pni train`` run folder holds ``checkpoint.pt`` (the last good state), ``checkpoint.prev.pt``
(the one before it), ``train_log.jsonl`` (one JSON line per finished epoch) and ``config.json``;
``pni eval`` and ``pni audit`` add ``eval/results.json`` and ``audit/audit.json``. A
``pni reproduce`` step folder adds ``step.json`` (what produced it) and its output file
(``OUTPUTS``). Writers use these names; ``pni.training.run_folder`` writes the run folder.
The readers here are lenient: a missing or half-written file reads as nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .files import read_json, read_jsonl

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
TRAIN_LOG = "train_log.jsonl"
CONFIG = "config.json"
OVERWRITTEN = ".overwritten"      # an overwritten run waits here until the new one has a checkpoint

RESULTS = "results.json"          # pni eval, a reproduce eval step, the demo
PARTIAL_EVALUATION = "evaluation.partial.pt"  # a running evaluation's finished attacks (resume)
TRANSFER = "transfer.json"        # pni transfer
AUDIT = "audit.json"              # pni audit
CERTIFY = "certify.json"          # pni certify
CHECK = "check.json"              # pni certify --check
SUBSTITUTE = "substitute.json"    # a reproduce substitute step
ALPHAS_FIGURE = "alphas.png"      # a reproduce alphas step (Fig. 2)
CARD = "card.json"                # pni eval --benchmark
STEP_RECORD = "step.json"         # a reproduce step: its settings and the code that ran it
TIMING = "timing.json"            # a reproduce step: wall seconds of its last (finishing) invocation
EVAL_FOLDER = "eval"              # pni eval's default output folder inside a run folder
AUDIT_FOLDER = "audit"            # pni audit's

DATA_LOCATION = "data_location"   # config.json: where the run's data_dir pointed when it trained

# a reproduce step's kind -> the file it writes
OUTPUTS: dict[str, str] = {"eval": RESULTS, "transfer": TRANSFER, "audit": AUDIT,
                           "alphas": ALPHAS_FIGURE, "certify": CERTIFY, "substitute": SUBSTITUTE}


def checkpoint_path(folder: str | os.PathLike) -> Path:
    """The run's checkpoint file (it may not exist yet)."""
    return Path(folder) / CHECKPOINT


def read_config(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``config.json`` as written (None when missing or unreadable)."""
    value = read_json(Path(folder) / CONFIG)
    return value if isinstance(value, dict) else None


def read_train_log(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of the run's ``train_log.jsonl`` (empty when missing or unreadable)."""
    return [r for r in read_jsonl(Path(folder) / TRAIN_LOG) if isinstance(r, dict)]


def read_output(folder: str | os.PathLike, name: str = RESULTS) -> Any:
    """A JSON output file of a run or step folder (``RESULTS``, ``AUDIT``, ...); None when
    missing or unreadable."""
    return read_json(Path(folder) / name)


def read_step_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """A reproduce step's ``step.json`` (None when missing or unreadable)."""
    value = read_json(Path(folder) / STEP_RECORD)
    return value if isinstance(value, dict) else None


def data_location(data_dir: str | None) -> dict[str, Any]:
    """The ``"data_location"`` record of ``config.json``: the config's ``data_dir`` resolved
    against the folder the run was started in, and which of the two ``data_dir`` itself is
    (``"resolved"``: an absolute path; ``"as typed"``: relative to that folder, e.g. a
    reproduce plan's ``../shared/data/...``, kept so that the run's key does not change)."""
    if not data_dir:
        return {"resolved": None, "data_dir": "none (the default cache or $PNI_DATA)"}
    path = Path(data_dir).expanduser()
    return {"resolved": str(path.resolve()), "data_dir": "resolved" if path.is_absolute() else "as typed"}


def recorded_data_dir(folder: str | os.PathLike) -> str | None:
    """The resolved data folder the run in ``folder`` recorded in its ``config.json`` (None:
    none recorded, or no config)."""
    record = (read_config(folder) or {}).get(DATA_LOCATION)
    return record.get("resolved") if isinstance(record, dict) else None
