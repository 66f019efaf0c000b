"""Advance the paper-scale runs by one step: train the next unfinished run(s) of a queue
for as many epochs as fit in ``--max-minutes``, then pack each run folder it touched.

A queue file has one run per line, ``NAME PRESET SCALE [field=value ...]`` (fields as in
``pni train``; ``#`` starts a comment). Run folders live in ``--root/NAME`` (checkpoint with
optimizer and RNG state, ``train_log.jsonl``, ``config.json``): small and self-contained,
so a folder can travel to a GPU machine, train a few minutes there, come back and be
committed. A run is finished when its checkpoint holds ``config.epochs`` epochs.

    python scripts/gpu_step.py --device cuda --max-minutes 8 --pack .carry/cifar10-jpeg.tar.xz \\
        --export "$OUT"          # on the GPU machine; then, here:
    tar -xf OUT/NAME.tar -C results/paper
    python scripts/gpu_step.py --status          # what is done, what is next
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # runs from a checkout without installing pni

from pni.cli_args import _field_parser  # noqa: E402  (the flags' own parsers, one settings style)
from pni.config import TrainConfig, load_config  # noqa: E402


class QueueError(ValueError):
    """A malformed queue file; the message names the file and line."""


@dataclass
class QueuedRun:
    name: str
    preset: str
    scale: str
    fields: dict[str, Any]

    def config(self, device: str) -> TrainConfig:
        return load_config(self.preset, self.scale, **{**self.fields, "device": device})


def read_queue(path: Path) -> list[QueuedRun]:
    """The runs of a queue file, in order."""
    fields = {f.name: f for f in TrainConfig.__dataclass_fields__.values()}
    runs: list[QueuedRun] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) < 3:
            raise QueueError(f"{path}:{number}: expected NAME PRESET SCALE [field=value ...], got {line!r}")
        values: dict[str, Any] = {}
        for word in words[3:]:
            key, sep, text = word.partition("=")
            if not sep or key not in fields:
                raise QueueError(f"{path}:{number}: {word!r} is not field=value with a TrainConfig field")
            try:
                values[key] = _field_parser(fields[key])(text)
            except (argparse.ArgumentTypeError, ValueError) as error:
                raise QueueError(f"{path}:{number}: {word!r}: {error}") from error
        runs.append(QueuedRun(words[0], words[1], words[2], values))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise QueueError(f"{path}: run names must be unique")
    return runs


def epochs_done(folder: Path) -> int:
    """Whole epochs in a run folder's checkpoint (0 without one; the log can be one ahead)."""
    from pni.reproduce.runner import checkpoint_epochs

    return checkpoint_epochs(folder / "checkpoint.pt")


def unpack(pack: Path, data_root: Path) -> Path:
    """Extracts ``NAME.tar.xz`` into ``data_root/NAME`` once; returns that folder."""
    target = data_root / pack.name.removesuffix(".tar.xz")
    if not target.exists():
        started = time.perf_counter()
        partial = target.with_name(target.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        with tarfile.open(pack) as archive:
            archive.extractall(partial, filter="data")
        partial.rename(target)
        print(f"unpacked {pack} into {target} in {time.perf_counter() - started:.1f}s", flush=True)
    return target


def train_for(run: QueuedRun, root: Path, device: str, minutes: float) -> tuple[int, int]:
    """Trains ``run`` for at most ``minutes``; returns (epochs done, epochs planned)."""
    from pni.data import load_dataset
    from pni.train import build_model, fit

    config = run.config(device)
    folder = root / run.name
    train_set = load_dataset(config.dataset, "train", config.data_dir, config.download)
    if config.train_subset:
        train_set = train_set.subset(config.train_subset)
    test_set = load_dataset(config.dataset, "test", config.data_dir, config.download)
    import torch

    torch.manual_seed(config.seed)
    model = build_model(config, train_set)
    resume = (folder / "checkpoint.pt").exists()
    print(f"{run.name}: {'resuming at epoch ' + str(epochs_done(folder)) if resume else 'starting'} "
          f"of {config.epochs} ({config.model}, noise {config.location or 'none'}, {device}, "
          f"up to {minutes:.1f} min)", flush=True)
    fit(model, train_set, config, test_set, out_dir=folder, resume=resume, max_minutes=minutes)
    return epochs_done(folder), config.epochs


def export(folder: Path, out: Path) -> Path:
    """Packs a run folder into ``out/NAME.tar`` (one file per run: the device returns few)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{folder.name}.tar"
    with tarfile.open(target, "w") as archive:
        for name in ("checkpoint.pt", "train_log.jsonl", "config.json"):
            if (folder / name).exists():
                archive.add(folder / name, arcname=f"{folder.name}/{name}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", type=Path, default=REPO / "results/paper/QUEUE")
    parser.add_argument("--root", type=Path, default=None, help="run folders (default: the queue's folder)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="wall time for training, all runs")
    parser.add_argument("--pack", type=Path, default=None, help="NAME.tar.xz of the data, unpacked into .data/NAME")
    parser.add_argument("--export", type=Path, default=None, help="pack each touched run folder into this folder")
    parser.add_argument("--status", action="store_true", help="print the queue's progress and stop")
    args = parser.parse_args(argv)
    try:
        runs = read_queue(args.queue)
    except (OSError, QueueError) as error:
        print(f"gpu_step: error: {error}", file=sys.stderr)
        return 2
    root = args.root or args.queue.parent
    if args.status:
        for run in runs:
            print(f"{run.name:24s} {epochs_done(root / run.name):4d} / {run.config('cpu').epochs} epochs")
        return 0
    if args.pack is not None:
        unpack(args.pack, REPO / ".data")
    deadline = time.perf_counter() + 60 * args.max_minutes
    touched: list[Path] = []
    for run in runs:
        left = (deadline - time.perf_counter()) / 60
        done, planned = epochs_done(root / run.name), run.config(args.device).epochs
        if done >= planned:
            continue
        if left < 0.5:
            break
        touched.append(root / run.name)
        done, planned = train_for(run, root, args.device, left)
        print(f"{run.name}: {done} / {planned} epochs", flush=True)
        if done < planned:
            break
    else:
        if not touched:
            print("queue finished: every run is done")
    for folder in touched if args.export else ():
        print(f"exported {export(folder, args.export)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
