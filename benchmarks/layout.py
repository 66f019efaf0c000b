"""The CPU layout ``pni.evaluate`` and ``pni.audit`` run a convolutional model in: channels_last
(``pni.models.modes.cpu_channels_last``) against the standard NCHW layout.

Two workloads, timed side by side in one process (interleaved rounds, medians), on PNI
models with their noise on (random weights: the layout's cost does not depend on them):

  attack   EOT-PGD, 3 steps x 4 draws (pni.attacks.pgd): forward+backward passes, as EOT-PGD,
           AutoAttack-rand and C&W spend them
  query    one no-grad forward pass of a large batch, as ZOO, EOT-ZOO and Square query (ZOO
           scores 2 x 128 + 1 points of 8 images per pass: 2,056 images)

and, with the noise off, the largest difference of the logits between the two layouts
(the convolutions only sum in another order).

    python benchmarks/layout.py --threads 1
    python benchmarks/layout.py --threads 1 --cases resnet20:A-a --rounds 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

import pni
from pni.attacks import pgd
from pni.models.modes import cpu_channels_last

EPS, STEPS, EOT = 8 / 255, 3, 4
DEFAULT_CASES = ("resnet20:W", "resnet20:A-a", "lenet5:W", "lenet5:A-a")
BATCHES = {"attack": 128, "query": 2056}


def make_case(case: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    arch, location = case.split(":")
    torch.manual_seed(0)
    model = pni.inject(pni.create_model(arch), location).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *model.input_shape, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return model, x, y


def workload(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    if name == "attack":
        return lambda: pgd(model, x, y, EPS, 2.5 * EPS / STEPS, STEPS, eot=EOT)

    def query() -> torch.Tensor:
        with torch.no_grad():
            return model(x)
    return query


def timed(fn: Callable[[], object], model: torch.nn.Module, channels_last: bool) -> float:
    if not channels_last:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    with cpu_channels_last(model) as changed:
        assert changed, "the model was not switched to channels_last"
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def logit_difference(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad(), pni.noise_enabled(model, False):
        standard = model(x)
        with cpu_channels_last(model):
            other = model(x)
    return float((standard - other).abs().max())


def run(case: str, name: str, rounds: int) -> dict[str, float]:
    model, x, y = make_case(case, BATCHES[name])
    fn = workload(name, model, x, y)
    times: dict[bool, list[float]] = {False: [], True: []}
    for layout in times:  # warm-up
        timed(fn, model, layout)
    for _ in range(rounds):
        for layout in times:
            times[layout].append(timed(fn, model, layout))
    standard, fast = (statistics.median(times[layout]) for layout in (False, True))
    return {"nchw_s": standard, "channels_last_s": fast, "speedup": standard / fast,
            "max_logit_difference": logit_difference(model, x[:64])}


def case_arguments(doc: str | None, default_cases: tuple[str, ...]) -> argparse.Namespace:
    """The flags of a benchmark over arch:location cases (--cases, --rounds, --threads, --json),
    parsed; torch's threads set and freed memory kept, as the pni command runs."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(default_cases), help="comma-separated arch:location "
                        "(default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pni.keep_freed_memory()
    return args


def write_figures(results: dict, path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)


def main() -> None:
    args = case_arguments(__doc__, DEFAULT_CASES)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; attack: EOT-PGD {STEPS} steps x "
          f"{EOT} draws on {BATCHES['attack']} images; query: one no-grad pass of {BATCHES['query']} images")
    header = f"{'case':<14}{'workload':<10}{'NCHW s':>10}{'NHWC s':>10}{'speed-up':>10}{'max |dlogit|':>14}"
    print(header + "\n" + "-" * len(header))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for case in args.cases.split(","):
        for name in BATCHES:
            r = run(case, name, args.rounds)
            results.setdefault(case, {})[name] = r
            print(f"{case:<14}{name:<10}{r['nchw_s']:>10.3f}{r['channels_last_s']:>10.3f}{r['speedup']:>9.2f}x"
                  f"{r['max_logit_difference']:>14.2e}", flush=True)
    print("(medians of interleaved rounds; speed-up = NCHW time / channels_last time)")
    write_figures(results, args.json)


if __name__ == "__main__":
    main()
