"""EOT-PGD throughput: pni's EOT-PGD against the plain loop of k forward/backward passes.

EOT-PGD (k = 20 noise draws per gradient, PGD-3, eps 8/255) on PNI models, CPU. Timed
side by side in one process (interleaved rounds, medians), so machine drift hits every
variant alike. Variants:

  pni          pni.attacks.pgd(..., eot=20), the default: parameters frozen (input gradients
               only), one draw per pass
  pni-vmap4    the same with eot_batch=4: 4 independent draws per vectorized pass
  pni-vmap20   eot_batch=20: all 20 draws in one vectorized pass
  loop         the plain loop: per step, 20 x (forward, loss.backward()) as one writes it
               first, parameter gradients included
  loop-input   the plain loop with torch.autograd.grad w.r.t. the input only

Peak memory (max RSS) of each variant is measured in its own subprocess with --memory.

    python benchmarks/eot.py --threads 1                     # the default cases, 3 rounds
    python benchmarks/eot.py --threads 1 --memory
    python benchmarks/eot.py --cases resnet20:W:128 --rounds 5 --device cuda
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import pni
from pni.attacks import pgd
from pni.attacks._common import project_linf

EPS, STEPS, K = 8 / 255, 3, 20
VARIANTS = ("pni", "pni-vmap4", "pni-vmap20", "loop", "loop-input")
DEFAULT_CASES = ("resnet20:W:32", "resnet20:W:128", "resnet20:A-a:32", "lenet5:W:16", "lenet5:A-a:16")


def make_case(case: str, device: str, channels_last: bool):
    arch, location, batch = case.split(":")
    torch.manual_seed(0)
    model = pni.inject(pni.create_model(arch), location).to(device).eval()
    shape = model.input_shape
    g = torch.Generator().manual_seed(0)
    x = torch.rand(int(batch), *shape, generator=g).to(device)
    y = torch.randint(0, 10, (int(batch),), generator=g).to(device)
    if channels_last and x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x, y


def plain_loop(model, x, y, input_only: bool) -> torch.Tensor:
    """EOT-PGD the plain way: k separate forward/backward passes per step."""
    step = 2.5 * EPS / STEPS
    x_adv = (x + (2 * torch.rand_like(x) - 1) * EPS).clamp(0, 1)
    for _ in range(STEPS):
        grad = torch.zeros_like(x)
        for _ in range(K):
            x_in = x_adv.detach().requires_grad_(True)
            loss = F.cross_entropy(model(x_in), y, reduction="sum")
            if input_only:
                grad += torch.autograd.grad(loss, x_in)[0]
            else:
                model.zero_grad(set_to_none=True)
                loss.backward()
                grad += x_in.grad
        x_adv = project_linf(x_adv + step * (grad / K).sign(), x, EPS)
    return x_adv.detach()


def make_variant(name: str, model, x, y) -> Callable[[], torch.Tensor]:
    step = 2.5 * EPS / STEPS
    if name == "pni":
        return lambda: pgd(model, x, y, EPS, step, STEPS, eot=K)
    if name.startswith("pni-vmap"):
        draws = int(name[len("pni-vmap"):])
        return lambda: pgd(model, x, y, EPS, step, STEPS, eot=K, eot_batch=draws)
    if name == "loop":
        return lambda: plain_loop(model, x, y, input_only=False)
    if name == "loop-input":
        for p in model.parameters():
            p.requires_grad_(False)  # restored below in run(); the loop needs no weight graph

        return lambda: plain_loop(model, x, y, input_only=True)
    raise ValueError(name)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(case: str, rounds: int, device: str, channels_last: bool) -> dict[str, float]:
    model, x, y = make_case(case, device, channels_last)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        make_variant(v, model, x, y)()
        for p in model.parameters():
            p.requires_grad_(True)
    for _ in range(rounds):
        for v in VARIANTS:
            fn = make_variant(v, model, x, y)
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[v].append(time.perf_counter() - start)
            for p in model.parameters():
                p.requires_grad_(True)
    return {v: len(x) / statistics.median(t) for v, t in times.items()}  # images per second


def peak_memory(case: str, variant: str, device: str, channels_last: bool, threads: int | None) -> float:
    """Max RSS (MiB) of a fresh process that builds the case and runs one variant once."""
    cmd = [sys.executable, __file__, "--one", case, variant, "--device", device]
    cmd += ["--channels-last"] if channels_last else []
    cmd += ["--threads", str(threads)] if threads else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def one(case: str, variant: str, device: str, channels_last: bool) -> None:
    model, x, y = make_case(case, device, channels_last)
    make_variant(variant, model, x, y)()
    # VmHWM: this process's own peak (ru_maxrss would keep the parent's peak across exec)
    status = Path("/proc/self/status")
    if status.exists():
        kib = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM"))
    else:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(kib / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help="comma-separated arch:location:batch (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--memory", action="store_true", help="also peak RSS per variant (subprocesses)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        one(*args.one, args.device, args.channels_last)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"EOT k={K}, PGD-{STEPS}")
    results = {}
    header = f"{'case':<18}" + "".join(f"{v:>12}" for v in VARIANTS) + f"{'pni/loop':>10}"
    print(header + "\n" + "-" * len(header))
    for case in args.cases.split(","):
        speed = run(case, args.rounds, args.device, args.channels_last)
        results[case] = {"images_per_s": speed}
        print(f"{case:<18}" + "".join(f"{speed[v]:>12.1f}" for v in VARIANTS)
              + f"{speed['pni'] / speed['loop']:>9.2f}x", flush=True)
        if args.memory:
            mem = {v: peak_memory(case, v, args.device, args.channels_last, args.threads) for v in VARIANTS}
            results[case]["peak_rss_mib"] = mem
            print(f"{'  peak RSS MiB':<18}" + "".join(f"{mem[v]:>12.0f}" for v in VARIANTS), flush=True)
    print("(images/s of EOT-PGD: higher is better; pni/loop = speed-up of pni's default over the plain loop)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
