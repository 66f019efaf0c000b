"""The honest protocol's cascade against every attack on every image, side by side.

One committed pni checkpoint (its own test data and eps), the noise on, judged over votes:
the attacks of the honest benchmark (EOT-PGD -> AutoAttack-rand -> Square-EOT, at a reduced
budget named in the output) run twice in one process, interleaved over rounds:

  every-image  each attack on every image (``pni.evaluate`` without ``cascade``)
  cascade      AutoAttack's way: each attacks only the images some draw still classifies
               correctly under the earlier ones (``pni-honest-v1``'s cascade)

It prints the wall time of each (median over rounds), their ratio, and both per-image worst
cases: equal up to the attacks' own randomness (the batches differ, so do their seeds).
The saving grows as robust accuracy falls: a CIFAR model at ~15 % robust gains the most.

    python benchmarks/cascade.py                                   # resnet20-pni-w (cpu scale), 50 images
    python benchmarks/cascade.py --model lenet5-pni-w --n 100 --rounds 2
Run it from the repository's root with ``../shared/data`` beside it (the CIFAR-10 JPEG copy).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from pni.benchmark.protocol import PNI_HONEST_V1
from pni.evaluation.evaluator import evaluate
from pni.evaluation.result import WORST_CASE
from pni.evaluation.opened_run import open_checkpoint
from pni.models.hub import default_root, pretrained_entry

CASCADE = PNI_HONEST_V1.cascade
ATTACKS = ("clean", *CASCADE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20-pni-w", help="a registered cpu-scale name (pni.pretrained)")
    parser.add_argument("--n", type=int, default=50, help="class-stratified test images")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--eot", type=int, default=5, help="draws per gradient / per Square query")
    parser.add_argument("--aa-iter", type=int, default=10, help="APGD iterations")
    parser.add_argument("--square-queries", type=int, default=50)
    parser.add_argument("--votes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = open_checkpoint(default_root() / pretrained_entry(args.model).path, n=args.n)
    options = {"eot": args.eot, "aa": {"n_iter": args.aa_iter, "eot_iter": args.eot},
               "square": {"n_queries": args.square_queries, "eot": args.eot}}
    budget = (f"EOT-PGD {run.paper_steps} steps x {args.eot} draws, AA-rand {args.aa_iter} it x {args.eot} draws, "
              f"Square {args.square_queries} queries x {args.eot} draws, {args.votes} votes (reduced)")
    print(f"{args.model}: {len(run.data)} images, eps {run.eps:.4f}, {budget}", flush=True)

    times: dict[str, list[float]] = {"every-image": [], "cascade": []}
    worst: dict[str, list[float]] = {"every-image": [], "cascade": []}
    for _ in range(args.rounds):
        for variant, cascade in (("every-image", ()), ("cascade", CASCADE)):
            started = time.perf_counter()
            result = evaluate(run.model, run.data, ATTACKS, trials=1, noise="on", eps=run.eps,
                              steps=run.paper_steps, votes=args.votes, attack_options=options, cascade=cascade)
            times[variant].append(time.perf_counter() - started)
            worst[variant].append(100 * result.accuracies["with_noise"][WORST_CASE][0])
            print(f"  {variant:12s} {times[variant][-1]:7.1f} s   worst case {worst[variant][-1]:.2f} %", flush=True)
    full, chained = statistics.median(times["every-image"]), statistics.median(times["cascade"])
    summary = {"model": args.model, "n": len(run.data), "budget": budget, "rounds": args.rounds,
               "threads": args.threads, "seconds": {k: statistics.median(v) for k, v in times.items()},
               "worst_case_percent": {k: statistics.mean(v) for k, v in worst.items()},
               "speedup": full / chained}
    print(f"cascade: {summary['speedup']:.2f}x faster than every attack on every image "
          f"({full:.1f} s vs {chained:.1f} s, median of {args.rounds}); worst case "
          f"{summary['worst_case_percent']['cascade']:.2f} % vs {summary['worst_case_percent']['every-image']:.2f} %")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
