"""Aggregate training throughput of K runs trained at once in one process
(``pni.training.train_concurrently``), per precision: the measurement issue 20 asks of a GPU
window. For each precision and K, K runs (seeds 0..K-1, ResNet-20 PNI-W, PGD-7 adversarial
training, batch 128, the paper's CIFAR settings) train two epochs of ``--images`` random
images together; the second epoch's wall seconds (after warm-up and graph recording) give
the aggregate images/s, ``K x images / seconds``, and the projected GPU-minutes of Tables 1-2
(9 runs x 160 epochs x 50,000 images) at that rate. Also the peak GPU memory of the K runs.

    python benchmarks/concurrency.py --out /tmp/conc                       # on a GPU
    python benchmarks/concurrency.py --out /tmp/conc --device cpu --model lenet5 --images 256 \\
        --ks 1,2 --precisions float32                                      # checks the script
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from pni.config import TrainConfig  # noqa: E402
from pni.data import Dataset  # noqa: E402
from pni.training.concurrent import train_concurrently  # noqa: E402

TABLES_1_2 = 9 * 160 * 50_000  # training images of Tables 1-2 at paper scale


def synthetic(n: int, shape: tuple[int, int, int]) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    return Dataset("random", "train", images, torch.arange(n) % 10, [str(i) for i in range(10)],
                   (0.5,) * shape[0], (0.25,) * shape[0])


def measure(k: int, precision: str, args: argparse.Namespace, data: Dataset) -> dict[str, Any]:
    configs = [TrainConfig(model=args.model, location="W", steps=7, eps=8 / 255, step_size=0.01, batch_size=128,
                           epochs=2, milestones=[], eval_subset=0, progress=False, device=args.device,
                           precision=precision, seed=seed) for seed in range(k)]
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        results = train_concurrently(configs, [Path(root) / f"run{i}" for i in range(k)], data=(data, data))
    total = time.perf_counter() - started
    seconds = max(r.history[-1]["train_seconds"] for r in results)  # epoch 2: warm, graphs recorded
    rate = k * len(data) / seconds
    record: dict[str, Any] = {"k": k, "precision": precision, "epoch_seconds": seconds, "images_per_s": rate,
                              "wall_seconds": total, "tables_1_2_gpu_minutes": TABLES_1_2 / rate / 60}
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        record.update(peak_gib=peak, gib_per_run=peak / k)
    return record


def render(report: dict[str, Any]) -> str:
    rows = report["results"]
    single = {r["precision"]: r["images_per_s"] for r in rows if r["k"] == 1}
    lines = [f"# Runs at once ({report['device']}, torch {report['torch']}, {report['model']}, "
             f"{report['images']} random images per epoch, batch 128, PGD-7)", "",
             "| precision | runs at once | s / epoch (all runs) | aggregate img/s | vs one run | "
             "peak GiB | GiB / run | Tables 1-2 GPU-minutes at this rate |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['images_per_s'] / single[r['precision']]:.2f}x" if r["precision"] in single else "-"
        lines.append(f"| {r['precision']} | {r['k']} | {r['epoch_seconds']:.2f} | {r['images_per_s']:.0f} | {ratio} | "
                     f"{r.get('peak_gib', float('nan')):.2f} | {r.get('gib_per_run', float('nan')):.2f} | "
                     f"{r['tables_1_2_gpu_minutes']:.0f} |")
    for key, error in report.get("errors", {}).items():
        lines.append(f"\n{key}: {error}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=2560, help="random training images per epoch (20 batches)")
    parser.add_argument("--ks", default="1,2,4,9", help="runs at once, comma separated")
    parser.add_argument("--precisions", default="tf32,bf16", help="comma separated (float32, one run: docs/GPU.md)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/concurrency.py: error: no CUDA GPU visible", file=sys.stderr)
        return 2
    shape = (1, 28, 28) if args.model == "lenet5" else (3, 32, 32)
    data = synthetic(args.images, shape)
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
                              "torch": torch.__version__, "model": args.model, "images": args.images,
                              "results": [], "errors": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    for precision in args.precisions.split(","):
        for k in (int(v) for v in args.ks.split(",")):
            try:
                record = measure(k, precision, args, data)
                report["results"].append(record)
                print(f"[concurrency] {precision} K={k}: {record['images_per_s']:.0f} img/s "
                      f"({record['wall_seconds']:.1f} s)", flush=True)
            except Exception as error:  # out of memory at a large K: keep the rest
                report["errors"][f"{precision} K={k}"] = f"{type(error).__name__}: {error}"[:400]
                print(f"[concurrency] {precision} K={k}: {report['errors'][f'{precision} K={k}']}", flush=True)
            (args.out / "concurrency.json").write_text(json.dumps(report, indent=2) + "\n")
            (args.out / "concurrency.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
