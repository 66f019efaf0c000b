"""Data-parallel throughput: 1 process vs 2 torchrun processes (DistributedDataParallel).

One PNI adversarial training step as ``pni train`` runs it (Trainer.train_step: PNI-W
ResNet-20, clean forward, PGD on the unwrapped model, adversarial forward, one backward,
SGD) at the same global batch: 1 process with all the threads against 2 processes with
half the threads each and half the batch each (gloo on CPU, nccl on GPU); also 1 process
with 1 thread (a reference that other load on the machine disturbs less). The runs are
launched with torchrun from this script, interleaved over ``--rounds`` rounds on the same
machine; each figure is the median over rounds of the median step time.

Communication share of a 2-process step, two ways:
  - ``(t_step - t_no_sync) / t_step``: ``DDP.no_sync()`` skips the gradient all-reduce;
  - the time of one all-reduce of a gradient-sized float32 buffer alone, over ``t_step``.

    python benchmarks/ddp.py                             # CPU: 2 threads vs 2 x 1 thread
    python benchmarks/ddp.py --rounds 3 --steps 8 --batch 128 --pgd 7
    python benchmarks/ddp.py --device cuda --threads 8   # one GPU per process (nccl)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import torch


def _worker(args: argparse.Namespace) -> None:
    from pni import distributed
    from pni.config import TrainConfig
    from pni.data import Dataset
    from pni.training.trainer import Trainer, build_model

    torch.set_num_threads(args.threads)
    device = distributed.init(args.device)
    world = distributed.world_size()
    generator = torch.Generator().manual_seed(0)
    n = args.batch * (args.warmup + 2 * args.steps)
    data = Dataset(name="random", split="train",
                   images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                        generator=generator),
                   labels=torch.randint(0, 10, (n,), generator=generator),
                   classes=[str(i) for i in range(10)],
                   mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    config = TrainConfig(model="resnet20", location="W", dataset="random", batch_size=args.batch, epochs=1,
                         steps=args.pgd, eval_subset=0, augment="crop-flip", progress=False,
                         device=args.device, milestones=[])
    torch.manual_seed(0)
    trainer = Trainer(build_model(config, data), data, config)
    batches = list(trainer.loader)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        distributed.barrier()

    def timed(chunk: list, no_sync: bool) -> list[float]:
        times = []
        for x, y in chunk:
            context = trainer.model.no_sync() if no_sync else contextlib.nullcontext()
            sync()
            start = time.perf_counter()
            with context:
                trainer.train_step(x, y, adversarial=True)
            sync()
            times.append(time.perf_counter() - start)
        return times

    timed(batches[:args.warmup], no_sync=False)
    chunks = batches[args.warmup:args.warmup + args.steps], batches[args.warmup + args.steps:]
    step = timed(chunks[0], no_sync=False)
    result = {"world_size": world, "threads": args.threads, "device": str(device),
              "per_rank_batch": trainer.loader.batch_size, "global_batch": args.batch,
              "step_s": statistics.median(step)}
    if world > 1:
        result["no_sync_step_s"] = statistics.median(timed(chunks[1], no_sync=True))
        numel = sum(p.numel() for p in trainer.net.parameters() if p.requires_grad)
        buffer = torch.zeros(numel, device=device)
        reduce_times = []
        for _ in range(20):
            sync()
            start = time.perf_counter()
            torch.distributed.all_reduce(buffer)
            sync()
            reduce_times.append(time.perf_counter() - start)
        result["allreduce_s"] = statistics.median(reduce_times)
        result["gradient_floats"] = numel
    if distributed.is_main():
        print("RESULT " + json.dumps(result), flush=True)
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(nproc: int, threads: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", __file__, "--worker",
               "--threads", str(threads), "--device", args.device, "--batch", str(args.batch),
               "--pgd", str(args.pgd), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{nproc}-process run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _median_run(results: list[dict]) -> dict:
    """The rounds of one run merged: the median of every timing, the rest from round 1."""
    return {key: statistics.median(r[key] for r in results) if key.endswith("_s") else value
            for key, value in results[0].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                        help="threads of the 1-process run; each of the 2 processes gets half")
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--pgd", type=int, default=7, help="PGD steps of the training adversary")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three runs")
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    load = os.getloadavg()[0]
    half = max(1, args.threads // 2)
    runs: dict[str, list[dict]] = {"one": [], "single_thread": [], "two": []}
    for _ in range(args.rounds):
        runs["one"].append(_launch(1, args.threads, args))
        runs["two"].append(_launch(2, half, args))
        runs["single_thread"].append(_launch(1, 1, args))
    one, single, two = (_median_run(runs[name]) for name in ("one", "single_thread", "two"))
    rows = [(f"1 process x {one['threads']} threads, batch {one['per_rank_batch']}", one),
            (f"1 process x 1 thread, batch {single['per_rank_batch']}", single),
            (f"2 processes x {two['threads']} threads, batch {two['per_rank_batch']} each", two)]
    print(f"PNI-W ResNet-20 adversarial training step, PGD-{args.pgd}, global batch {args.batch}, "
          f"device {args.device} ({torch.__version__}, {os.cpu_count()} cores, load average "
          f"{load:.1f} at start, {args.rounds} rounds)")
    for label, r in rows:
        print(f"  {label:<40} {r['step_s']:7.3f} s/step  {args.batch / r['step_s']:8.1f} samples/s")
    print(f"  2 processes vs 1 process x {one['threads']} threads: "
          f"{one['step_s'] / two['step_s']:.2f}x samples/s")
    print(f"  2 processes vs 1 process x 1 thread:  {single['step_s'] / two['step_s']:.2f}x samples/s")
    share = (two["step_s"] - two["no_sync_step_s"]) / two["step_s"]
    print(f"  2-process step without the all-reduce (no_sync): {two['no_sync_step_s']:.3f} s "
          f"-> communication share {100 * share:.1f}%")
    print(f"  one all-reduce of the gradient ({two['gradient_floats']:,} floats, "
          f"{4 * two['gradient_floats'] / 2**20:.2f} MiB): {1000 * two['allreduce_s']:.2f} ms "
          f"= {100 * two['allreduce_s'] / two['step_s']:.1f}% of a step")


if __name__ == "__main__":
    main()
