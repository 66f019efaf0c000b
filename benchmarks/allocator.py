"""Freed memory kept in the heap (``pni.allocator.keep_freed_memory``, what the ``pni``
command does at start) against glibc's defaults, on the attack work with the largest batches.

Each workload runs in a fresh process per setting (the setting is process-wide), the two
settings interleaved over ``--rounds``; the table gives medians of wall, user and system
seconds and of the page faults, and the ratio default / kept of the wall time:

- ``zoo``: ZOO (Table 5) on ResNet-20, 8 CIFAR-sized images, 3 iterations of 128
  coordinates: 257 queries per image in one forward pass of 8 images (2,056 rows);
- ``honest``: the honest protocol's EOT-PGD (EOT 2, 3 steps) and 10 votes on ResNet-20
  PNI-W, 128 images in one batch (1,280 noisy rows);
- ``train``: 4 batch-128 PGD-7 adversarial training steps of ResNet-20 PNI-W (small blocks:
  the control, expected unchanged).

    python benchmarks/allocator.py [--rounds 3] [--threads 1]

Measured 2026-11-26 (2 cores, both busy with other jobs: absolute times swing, ratios less;
torch 2.13 CPU, glibc 2.36, 1 thread; medians of 3 rounds):

| workload | setting | wall s | user s | sys s | page faults | wall default / kept |
|---|---|---|---|---|---|---|
| zoo | default | 29.8 | 5.0 | 9.8 | 6,236,108 |  |
| zoo | kept | 10.2 | 4.4 | 0.5 | 321,392 | 2.92 |
| honest | default | 6.2 | 2.7 | 0.3 | 211,090 |  |
| honest | kept | 5.6 | 2.7 | 0.1 | 44,526 | 1.11 |
| train | default | 17.7 | 8.2 | 0.5 | 264,634 |  |
| train | kept | 17.4 | 8.4 | 0.3 | 179,451 | 1.02 |

ZOO spent twice as long in the kernel (page faults of its 2,056-row passes) as computing;
kept, it runs 2.9x faster (3.0x in CPU seconds, user + sys). The honest protocol's batches
gain 1.1x, training (batch 128) nothing, as expected: its blocks are under the threshold.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKLOAD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
import torch, pni
from pni.allocator import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
torch.set_num_threads(int(sys.argv[4]))
torch.manual_seed(0)
model = pni.inject(pni.create_model("resnet20"), "W")
kind = sys.argv[2]

def run():
    if kind == "zoo":
        from pni.attacks.zoo import zoo
        plain = pni.create_model("resnet20").eval()   # noiseless: its labels hold for every query
        x = torch.rand(8, 3, 32, 32)
        zoo(plain, x, plain(x).argmax(1), steps=3, batch_size=8, early_stop=False)
    elif kind == "honest":
        from pni.evaluation import evaluate
        x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
        evaluate(model, (x, y), ("eot-pgd",), trials=1, noise=True, eps=8 / 255, steps=3, step_size=0.01,
                 batch_size=128, votes=10, worst_case=False, attack_options={"eot": 2})
    else:
        from pni.config import TrainConfig
        from pni.training import Trainer
        data = (torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8), torch.arange(512) % 10)
        trainer = Trainer(model, data, TrainConfig(model="resnet20", epochs=1, progress=False, eval_subset=0))
        trainer.run_epoch(0)

before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
run()
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - start, "user": after.ru_utime - before.ru_utime,
                  "sys": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt}))
"""


def measure(setting: str, kind: str, threads: int) -> dict[str, float]:
    env_drop = ("MALLOC_", "GLIBC_TUNABLES", "PNI_MALLOC")
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(env_drop)}
    env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", WORKLOAD, setting, kind, str(REPO / "src"), str(threads)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workloads", default="zoo,honest,train")
    args = parser.parse_args()
    rows = ["| workload | setting | wall s | user s | sys s | page faults | wall default / kept |",
            "|---|---|---|---|---|---|---|"]
    for kind in args.workloads.split(","):
        samples: dict[str, list[dict[str, float]]] = {"default": [], "kept": []}
        for _ in range(args.rounds):
            for setting in samples:
                samples[setting].append(measure(setting, kind, args.threads))
        med = {s: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for s, runs in samples.items()}
        ratio = med["default"]["wall"] / med["kept"]["wall"]
        for setting, m in med.items():
            rows.append(f"| {kind} | {setting} | {m['wall']:.1f} | {m['user']:.1f} | {m['sys']:.1f} | "
                        f"{m['faults']:,.0f} | {f'{ratio:.2f}' if setting == 'kept' else ''} |")
        print(rows[-2], rows[-1], sep="\n", flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
