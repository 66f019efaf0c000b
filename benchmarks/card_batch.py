"""The batch a card attacks in on a CPU (``pni.benchmark.run.card_batch_size``: 32 images)
against the evaluation default (256): the time per image of the same work, split in batches of
each size, timed side by side in one process (interleaved rounds, medians), on PNI models with
their noise on, in the layout ``evaluate`` runs them in (channels_last).

  attack   EOT-PGD, 2 steps x 2 draws (forward+backward passes, as EOT-PGD and AutoAttack-rand
           spend them)
  query    no-grad forward passes (as Square-EOT and ZOO query)

A ratio near 1 means the smaller batch, which bounds what a stopped card loses, costs nothing.

    python benchmarks/card_batch.py --threads 1
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from pni.attacks import pgd
from pni.benchmark.run import CPU_BATCH, DEVICE_BATCH
from pni.models.modes import cpu_channels_last

from layout import case_arguments, make_case, write_figures  # (run from the repository root: python benchmarks/card_batch.py)

EPS, STEPS, EOT = 8 / 255, 2, 2
DEFAULT_CASES = ("resnet20:W", "resnet20:A-a")


def in_batches(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               batch: int) -> Callable[[], None]:
    """The workload ``name`` over all of ``x``, ``batch`` images at a time."""
    def run() -> None:
        for start in range(0, len(y), batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            if name == "attack":
                pgd(model, xb, yb, EPS, 2.5 * EPS / STEPS, STEPS, eot=EOT)
            else:
                with torch.no_grad():
                    model(xb)
    return run


def run(case: str, name: str, rounds: int) -> dict[str, float]:
    model, x, y = make_case(case, DEVICE_BATCH)
    times: dict[int, list[float]] = {CPU_BATCH: [], DEVICE_BATCH: []}
    with cpu_channels_last(model):
        for batch in times:  # warm-up
            in_batches(name, model, x, y, batch)()
        for _ in range(rounds):
            for batch in times:
                start = time.perf_counter()
                in_batches(name, model, x, y, batch)()
                times[batch].append(time.perf_counter() - start)
    small, large = (statistics.median(times[batch]) / len(y) for batch in (CPU_BATCH, DEVICE_BATCH))
    return {f"batch{CPU_BATCH}_ms_per_image": 1e3 * small, f"batch{DEVICE_BATCH}_ms_per_image": 1e3 * large,
            "ratio": small / large}


def main() -> None:
    args = case_arguments(__doc__, DEFAULT_CASES)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {DEVICE_BATCH} images in batches of "
          f"{CPU_BATCH} and of {DEVICE_BATCH}; attack: EOT-PGD {STEPS} steps x {EOT} draws; query: no-grad passes")
    header = f"{'case':<14}{'workload':<10}{f'{CPU_BATCH} ms/img':>12}{f'{DEVICE_BATCH} ms/img':>13}{'ratio':>8}"
    print(header + "\n" + "-" * len(header))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for case in args.cases.split(","):
        for name in ("attack", "query"):
            r = run(case, name, args.rounds)
            results.setdefault(case, {})[name] = r
            small, large = r[f"batch{CPU_BATCH}_ms_per_image"], r[f"batch{DEVICE_BATCH}_ms_per_image"]
            print(f"{case:<14}{name:<10}{small:>12.2f}{large:>13.2f}{r['ratio']:>8.2f}", flush=True)
    print(f"(medians of interleaved rounds; ratio = time per image in batches of {CPU_BATCH} / of {DEVICE_BATCH})")
    write_figures(results, args.json)


if __name__ == "__main__":
    main()
