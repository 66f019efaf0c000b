"""The ``pni`` command's thread policy against fixed choices, quiet and under load (issue 24).

A short LeNet-5 PNI-W adversarial training (``pni train --preset mnist-lenet --scale smoke``,
2 epochs by default) is timed side by side in four settings:

- ``torch default``: torch's own thread count (one per core) and OpenMP's default wait policy
  (spin, then sleep): what ``pni`` did before;
- ``1 thread``: ``--threads 1``;
- ``all cores passive``: one thread per core with ``OMP_WAIT_POLICY=PASSIVE``;
- ``pni default``: what the ``pni`` command now does (passive wait, ``--threads`` auto: torch's
  count, one per core), run through the command's own thread code;

each on a quiet machine and with 1 and 3 competing busy processes (pure-Python spin loops
pinned to nothing). Each timing is one fresh process (the wait policy must be set before torch
starts); the time is the training call's wall time, import excluded. Prints one table of
seconds and each setting's ratio to the best fixed choice (``1 thread`` or ``all cores,
passive``) under the same load.

    python benchmarks/threads.py      # about 10 minutes on 2 cores: torch's default is that slow under load
    python benchmarks/threads.py --epochs 1 --competitors 0,1 --repeats 1

The numbers are only comparable within one run: other load on the machine adds to every cell.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "torch default": {"wait": None, "threads": None},
    "1 thread": {"wait": "PASSIVE", "threads": "1"},
    "all cores passive": {"wait": "PASSIVE", "threads": str(os.cpu_count() or 1)},
    "pni default": {"wait": "PASSIVE", "threads": "auto"},
}
FIXED = ("1 thread", "all cores passive")


def child(args: argparse.Namespace) -> None:
    """One timed training in this fresh process; prints JSON {seconds, threads}."""
    setting = SETTINGS[args.child]
    if setting["wait"] is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = setting["wait"]
    import contextlib
    import io

    import torch

    from pni.cli import main

    argv = ["train", "--preset", "mnist-lenet", "--scale", "smoke", "--epochs", str(args.epochs),
            "--train-subset", str(args.train_subset), "--progress", "false", "--out", args.out, "--overwrite"]
    if setting["threads"] is not None:
        argv += ["--threads", setting["threads"]]
    else:  # torch default: the pni command's own choice skipped
        import pni.threads as threads

        threads.apply_threads = lambda flag=None: (torch.get_num_threads(), "torch")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads(), "status": status}))


def spin() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def timed(name: str, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs),
               "--train-subset", str(args.train_subset), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=2048)
    parser.add_argument("--competitors", default="0,1,3", help="busy processes beside the training")
    parser.add_argument("--repeats", type=int, default=1, help="timings per cell (the fastest is kept)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="which settings, comma-separated")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    names = [s.strip() for s in args.settings.split(",")]
    loads = [int(c) for c in args.competitors.split(",")]
    print(f"LeNet-5 PNI-W, {args.epochs} epoch(s) of smoke-scale PGD training on {args.train_subset} images; "
          f"{os.cpu_count()} cores; seconds (threads used), fastest of {args.repeats}")
    table: dict[tuple[str, int], tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for load in loads:
            busy = [spin() for _ in range(load)]
            try:
                time.sleep(0.5)
                for name in names:
                    runs = [timed(name, args, Path(tmp) / "run") for _ in range(args.repeats)]
                    best = min(runs, key=lambda r: r["seconds"])
                    table[(name, load)] = (best["seconds"], best["threads"])
                    print(f"  {load} busy, {name}: {best['seconds']:.1f} s ({best['threads']} threads)", flush=True)
            finally:
                for process in busy:
                    process.kill()
                    process.wait()
    header = "| setting | " + " | ".join(f"{n} busy" for n in loads) + " |"
    print("\n" + header + "\n|" + "---|" * (len(loads) + 1))
    for name in names:
        cells = []
        for load in loads:
            seconds, threads = table[(name, load)]
            fixed = [table[(f, load)][0] for f in FIXED if (f, load) in table]
            ratio = f", {seconds / min(fixed):.2f}x best fixed" if fixed else ""
            cells.append(f"{seconds:.1f} s ({threads} thr{ratio})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
