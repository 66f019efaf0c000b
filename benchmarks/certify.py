"""Certification throughput against the model's bare forward passes (issue goal: >= 0.9x).

For each model, the same number of noisy samples goes through (a) ``pni.certify``'s
sampler (``sample_counts``: Gaussian noise, eval + inference mode, BatchNorm folded, a
fresh draw of the model's own noise per sample, class counting) and (b) a bare loop of
plain forward passes of batches of the same size under ``torch.inference_mode``. Timed
side by side in one process, interleaved rounds, medians.

A model with PNI noise runs every sample as its own batch of one (``vmap`` with
``randomness="different"``) so that the samples are independent, as Cohen's bound needs;
the bare loop draws one weight noise per batch, which certification must not do. That
independence is the price measured in the ``W`` rows.

    python benchmarks/certify.py [--rounds 3] [--threads 2]

Measured here (2 cores, 1 thread, torch 2.13 CPU, 2026-11-26; certify / bare): LeNet-5 no
noise 0.99, A-a 0.67, W 0.10; ResNet-20 no noise 1.06, A-b 0.63, W 0.34. The goal (0.9x) holds
for deterministic models; the per-sample draws of noisy ones cost the rest.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import pni
from pni.certify import sample_counts

SIGMA, BATCH = 0.25, 500
CASES = (("lenet5", None, 2000), ("lenet5", "A-a", 2000), ("lenet5", "W", 2000),
         ("resnet20", None, 1000), ("resnet20", "A-b", 1000), ("resnet20", "W", 1000))


def build(arch: str, location: str | None) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = pni.create_model(arch)
    if location:
        pni.inject(model, location)
    model.eval()
    x = torch.rand(2, *model.input_shape)
    return model, x


def bare_loop(model: torch.nn.Module, x: torch.Tensor, num: int) -> Callable[[], None]:
    """Plain forward passes over ``len(x) * num`` noisy samples, ``BATCH`` per pass."""
    def run() -> None:
        with torch.inference_mode():
            total = len(x) * num
            for start in range(0, total, BATCH):
                owner = torch.arange(start, min(start + BATCH, total)) // num
                batch = x[owner] + SIGMA * torch.randn(len(owner), *x.shape[1:])
                model(batch).argmax(1)
    return run


def certify_sampler(model: torch.nn.Module, x: torch.Tensor, num: int) -> Callable[[], None]:
    return lambda: sample_counts(model, x, SIGMA, num, batch_size=BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, sigma {SIGMA}, {BATCH} samples per pass, "
          f"{args.rounds} rounds (median samples/s)")
    print("| model | noise | bare forward | certify sampler | ratio |")
    print("|---|---|---|---|---|")
    for arch, location, num in CASES:
        model, x = build(arch, location)
        runs = {"bare": bare_loop(model, x, num), "certify": certify_sampler(model, x, num)}
        for fn in runs.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        rate = {k: len(x) * num / statistics.median(v) for k, v in times.items()}
        print(f"| {arch} | {location or 'none'} | {rate['bare']:,.0f} | {rate['certify']:,.0f} | "
              f"{rate['certify'] / rate['bare']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
