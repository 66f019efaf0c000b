"""Cost of one PNI adversarial training step against its floor and the original code's way.

ResNet-20, batch 128, PGD-7, CPU. Timed side by side in one process (interleaved rounds,
medians), so machine drift hits every variant alike:

  a        pni's training step (Trainer.train_step: PNI-W, channels_last, labels from the
           reused clean forward, BatchNorm folded into the convs for the attack passes)
  a-nofold the same without the BatchNorm fold
  b        the floor: bare passes of the plain model, no noise, channels_last:
           7 x (forward + input gradient) in eval mode, 1 forward for the labels,
           2 x forward + one full backward in train mode
  c        the original code's way: a deep copy of the model per batch, loss.backward()
           with parameter gradients at every PGD step, NCHW contiguous (PNI-W)

Peak memory (max RSS) of each variant is measured in its own subprocess.

    python benchmarks/train_step.py                 # 5 rounds + memory
    python benchmarks/train_step.py --rounds 3 --batch 128 --threads 2
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import pni
from pni.config import TrainConfig
from pni.training.trainer import Trainer

EPS, STEP, STEPS = 8 / 255, 0.01, 7
VARIANTS = ("a", "a-nofold", "b", "c")
BASELINE = "imports"  # a child that only imports torch and pni: the memory floor of a process


def make_batch(batch: int, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def make_pni_step(batch: int, fold: bool):
    """Variant a: pni's own training step."""
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20"), "W")
    config = TrainConfig(model="resnet20", steps=STEPS, eps=EPS, step_size=STEP, batch_size=batch,
                         progress=False, fold_bn=fold, eval_subset=0)
    data = (torch.rand(batch, 3, 32, 32), torch.zeros(batch, dtype=torch.long))
    trainer = Trainer(model, data, config)
    x, y = make_batch(batch, True)
    return lambda: trainer.train_step(x, y, adversarial=True)


def make_floor(batch: int):
    """Variant b: the bare passes of the plain model (no noise), channels_last."""
    torch.manual_seed(0)
    model = pni.create_model("resnet20").to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = make_batch(batch, True)
    params = list(model.parameters())

    def step() -> None:
        model.eval()
        with torch.no_grad():
            model(x)  # the labels
        for p in params:
            p.requires_grad_(False)
        for _ in range(STEPS):
            xi = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xi), y, reduction="sum"), xi)
        for p in params:
            p.requires_grad_(True)
        model.train()
        loss = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    return step


def original_way_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                      y: torch.Tensor) -> None:
    """One step the original code's way: a deep copy of the model for the attack, parameter
    gradients at every PGD step (``loss.backward()``), then the Eq. 11 update."""
    attacker = copy.deepcopy(model)
    attacker.eval()
    with torch.no_grad():
        labels = attacker(x).argmax(1)
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        x_adv = x_adv.detach().requires_grad_(True)
        attacker.zero_grad()
        F.cross_entropy(attacker(x_adv), labels).backward()
        x_adv = torch.min(torch.max(x_adv + STEP * x_adv.grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    model.train()
    loss = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(x_adv.detach()), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def make_original(batch: int):
    """Variant c: deep copy per batch, parameter gradients at every PGD step, NCHW."""
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20"), "W")
    optimizer = torch.optim.SGD(pni.param_groups(model, 3e-4), lr=0.01, momentum=0.9, nesterov=True)
    x, y = make_batch(batch, False)
    return lambda: original_way_step(model, optimizer, x, y)


def make(variant: str, batch: int):
    if variant == "a":
        return make_pni_step(batch, fold=True)
    if variant == "a-nofold":
        return make_pni_step(batch, fold=False)
    if variant == "b":
        return make_floor(batch)
    return make_original(batch)


def peak_memory_mb(variant: str, batch: int, threads: int) -> float:
    """Max RSS of a subprocess that runs 2 steps of ``variant``, in MB."""
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--batch", str(batch),
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child", choices=(*VARIANTS, BASELINE), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        if args.child != BASELINE:
            step = make(args.child, args.batch)
            step(), step()
        print(json.dumps({"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    # Memory first: a child's max RSS counts what it inherited, so fork while this process is small.
    memory = {} if args.no_memory else {
        v: peak_memory_mb(v, args.batch, args.threads) for v in (BASELINE, *VARIANTS)}
    steps = {v: make(v, args.batch) for v in VARIANTS}
    for fn in steps.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[variant].append(time.perf_counter() - start)
    med = {v: statistics.median(t) for v, t in times.items()}
    print(f"torch {torch.__version__}, {args.threads} threads, ResNet-20, batch {args.batch}, "
          f"PGD-{STEPS}, {args.rounds} rounds (median s/step; min-max)")
    for v in VARIANTS:
        print(f"  {v:9s} {med[v]:.3f} s  ({min(times[v]):.3f}-{max(times[v]):.3f})")
    print(f"a/b (pni / floor)              = {med['a'] / med['b']:.3f}")
    print(f"a-nofold/b                     = {med['a-nofold'] / med['b']:.3f}")
    print(f"c/a (original way / pni)       = {med['c'] / med['a']:.3f}")
    for v in VARIANTS if memory else ():
        print(f"peak memory {v:9s} = {memory[v]:.0f} MB max RSS "
              f"({memory[v] - memory[BASELINE]:.0f} MB above the {memory[BASELINE]:.0f} MB of the imports)")


if __name__ == "__main__":
    main()
