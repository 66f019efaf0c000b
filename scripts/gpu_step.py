"""Advance the paper-scale reproduction on a GPU by one step: train the next unfinished
runs of ``pni reproduce`` plans (``--plan``, default Table 2 then Table 1's extra runs, at
``--scale paper``) for as many epochs as fit in ``--max-minutes``, up to ``--concurrent``
of them at once in this process (``pni.training.concurrent``: each run as it would be
alone; default auto: from the free GPU memory), then pack each run folder it touched.

The runs are the plan's own: the same run keys and settings as ``pni reproduce table2
--scale paper --data-dir ../shared/data/cifar10-jpeg.zip``, so a run advanced here is
reused (or resumed) by ``pni reproduce`` anywhere. A GPU machine cannot download CIFAR-10;
the data is the CIFAR-10 JPEG copy: ``--pack`` (from ``scripts/pack_cifar.sh``) rebuilds its
zip at ``--data-dir`` when it is missing. Run folders (checkpoint with optimizer and RNG
state, ``train_log.jsonl``, ``config.json``) are small and self-contained: one travels to
the GPU machine, trains a few minutes there, comes back and is committed.

    python scripts/gpu_step.py --device cuda --max-minutes 8 --pack .carry/cifar10-jpeg.tar.xz \\
        --concurrent auto --export "$OUT"          # on the GPU machine; then, here:
    tar -xf OUT/KEY.tar -C results/paper
    python scripts/gpu_step.py --status          # what is done, what is next
"""
from __future__ import annotations

import argparse
import sys
import tarfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # runs from a checkout without installing pni

from pni.errors import PNIError  # noqa: E402
from pni.reproduce import Runner, get_plans, resolve  # noqa: E402
from pni.reproduce.runner import auto_concurrency, checkpoint_epochs  # noqa: E402
from pni.reproduce.steps import Step  # noqa: E402
from pni.training.run_folder import TrainingInterrupted

DATA = "../shared/data/cifar10-jpeg.zip"


def zip_from_pack(pack: Path, target: Path) -> Path:
    """Writes the images of ``NAME.tar.xz`` (train/<class>/*, test/<class>/*) into the zip
    ``target`` once (stored, not recompressed: the JPEG bytes as they are); returns it."""
    if target.exists():
        return target
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(pack) as archive, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as out:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or member.name.startswith("/") or ".." in parts:
                continue
            source = archive.extractfile(member)
            if source is not None:
                out.writestr(member.name, source.read())
    partial.replace(target)
    print(f"wrote {target} from {pack} in {time.perf_counter() - started:.1f}s", flush=True)
    return target


def train_steps(plan: str, scale: str, data_dir: str | None, device: str) -> list[Step]:
    """The training runs of ``plan`` (comma separated plans: in that order, each run once) at
    ``scale``, in plan order."""
    steps: dict[str, Step] = {}
    for name in plan.split(","):
        for step in resolve(get_plans(name.strip()), scale, device=device, data_dir=data_dir):
            if step.kind == "train":
                steps.setdefault(step.key, step)
    return list(steps.values())


def concurrency(text: str, device: str) -> int:
    """``--concurrent``: ``auto`` (``pni.reproduce.runner.auto_concurrency``) or K >= 1."""
    if text == "auto":
        return auto_concurrency(device)
    if not text.isdigit() or int(text) < 1:
        raise PNIError(f"--concurrent must be a whole number >= 1 or auto, got {text!r}")
    return int(text)


def epochs_done(folder: Path) -> int:
    """Whole epochs in a run folder's checkpoint (0 without one; the log can be one ahead)."""
    return checkpoint_epochs(folder / "checkpoint.pt")


def export(folder: Path, out: Path) -> Path:
    """Packs a run folder into ``out/NAME.tar`` (one file per run: the device returns few)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{folder.name}.tar"
    with tarfile.open(target, "w") as archive:
        for name in ("checkpoint.pt", "train_log.jsonl", "config.json", "timing.json"):
            if (folder / name).exists():
                archive.add(folder / name, arcname=f"{folder.name}/{name}")
    return target


def _stamp(folder: Path) -> float:
    path = folder / "checkpoint.pt"
    return path.stat().st_mtime if path.exists() else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="table2,table1",
                        help="the pni reproduce plans whose runs to train, comma separated (default table2,table1)")
    parser.add_argument("--concurrent", default="auto",
                        help="runs trained at once in this process (default auto: 1 off CUDA, free GiB // 4 on CUDA)")
    parser.add_argument("--scale", default="paper", help="its scale (default paper)")
    parser.add_argument("--data-dir", default=DATA, help=f"CIFAR-10 image folder or zip (default {DATA})")
    parser.add_argument("--out", type=Path, default=REPO / "results/paper", help="run folders (default results/paper)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-minutes", type=float, default=8.0, help="wall time for training, all runs")
    parser.add_argument("--pack", type=Path, default=None, help="NAME.tar.xz of the data: rebuilds --data-dir's zip")
    parser.add_argument("--export", type=Path, default=None, help="pack each touched run folder into this folder")
    parser.add_argument("--status", action="store_true", help="print the runs' progress and stop")
    args = parser.parse_args(argv)
    try:
        if args.pack is not None:
            zip_from_pack(args.pack, Path(args.data_dir))
        steps = train_steps(args.plan, args.scale, args.data_dir, args.device)
        if args.status:
            for step in steps:
                assert step.config is not None
                print(f"{step.key:48s} {epochs_done(args.out / step.key):4d} / {step.config.epochs} epochs")
            return 0
        before = {s.key: _stamp(args.out / s.key) for s in steps}
        code = 0
        if args.max_minutes > 0:
            runner = Runner(args.out, args.device, max_minutes=args.max_minutes,
                            concurrent=concurrency(args.concurrent, args.device))
            try:
                runner.run(steps)
            except TrainingInterrupted as stop:   # a checkpoint was written: pack what there is
                print(f"gpu_step: {stop}", file=sys.stderr)
                code = stop.exit_code
            else:
                if not runner.stopped_early:
                    print(f"{args.plan} at {args.scale} scale: every training run is done")
    except (OSError, tarfile.TarError, zipfile.BadZipFile, PNIError) as error:
        print(f"gpu_step: error: {error}", file=sys.stderr)
        return 2
    touched = [args.out / s.key for s in steps if _stamp(args.out / s.key) != before[s.key]]
    for folder in touched:
        print(f"{folder.name}: {epochs_done(folder)} epochs")
        if args.export:
            print(f"exported {export(folder, args.export)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
