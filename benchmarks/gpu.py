"""The CUDA path on one GPU: its tests, the training step's speed, the 160-epoch projection.

One prepared script, about 4-6 minutes on one H100/H200:

  (a) runs the ``cuda`` tests (tests/test_cuda.py);
  (b) times one ResNet-20 batch-128 PGD-7 adversarial training step, side by side in one
      process (interleaved rounds, medians, CUDA-synchronized):
        pni-graph       pni's step as ``pni train`` runs it on CUDA (the default): PNI-W,
                        channels_last, BatchNorm folded for the attack passes, the whole
                        step recorded once as a CUDA graph and replayed
        pni-graph-bf16  the same with bf16 autocast (not the same function)
        pni-graph-tf32  the same with TF32 convolutions (``precision="tf32"``, PyTorch's CUDA default; not the same function)
        pni-eager       pni's step without the CUDA graph (``cuda_graphs = false``)
        pni-graph-autotune  pni-graph recorded with cuDNN autotuning (``cudnn_benchmark``)
        floor-graph     the bare passes of the plain model (no noise), recorded as a graph:
                        1 label forward, 7 x (forward + input gradient), 2 forwards + one
                        backward + the SGD update
        floor-eager     the same passes, eager
        original        the original code's way: a deep copy of the model per batch,
                        parameter gradients at every PGD step, NCHW, eager
  (c) runs one real epoch (391 steps on CIFAR-sized uint8 data on the GPU, with the
      per-epoch PGD evaluation on 1,000 images) and projects the 160-epoch time;
  (d) with ``--data``, trains ResNet-20 briefly in float32 and in bf16 on the CIFAR-10
      JPEG copy (same seed) and reports the accuracy effect of bf16;
  (e) writes ``gpu.md`` (Markdown, also printed) and ``gpu.json`` to ``--out``.

    python benchmarks/gpu.py --out /tmp/gpu [--data .data/cifar10-jpeg] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import pni  # noqa: E402
from pni.config import TrainConfig  # noqa: E402
from pni.training.trainer import Trainer
from train_step import original_way_step  # noqa: E402  (benchmarks/: the same original way on CPU)

EPS, STEP, STEPS, BATCH = 8 / 255, 0.01, 7, 128
EPOCHS, TRAIN_IMAGES = 160, 50_000
DEVICE = torch.device("cuda")
Step = Callable[[], Any]


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def run_cuda_tests(out: Path, timeout: int) -> dict[str, Any]:
    """pytest -m cuda on tests/test_cuda.py; the summary line and the log file."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
               str(REPO / "tests" / "test_cuda.py")]
    try:
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as error:
        text, code = f"{error.stdout or ''}\n{error.stderr or ''}\nTIMEOUT after {timeout}s", -1
    (out / "cuda_tests.log").write_text(text if isinstance(text, str) else str(text))
    lines = [line for line in str(text).splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line
                    or " error" in line), lines[-1] if lines else "no output")
    return {"returncode": code, "summary": summary.strip("= "), "seconds": time.perf_counter() - started}


# --- step variants -----------------------------------------------------------------------

def _batch(channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 3, 32, 32, generator=g).to(DEVICE)
    y = torch.randint(0, 10, (BATCH,), generator=g).to(DEVICE)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def pni_config(**changes: Any) -> TrainConfig:
    values = dict(model="resnet20", steps=STEPS, eps=EPS, step_size=STEP, batch_size=BATCH,
                  progress=False, eval_subset=0, device=str(DEVICE), precision="float32")
    values.update(changes)
    return TrainConfig(**values)


def make_pni(**changes: Any) -> Step:
    """pni's own step, through the trainer's per-batch entry (graph replay or eager)."""
    torch.manual_seed(0)
    data = (torch.zeros(BATCH, 3, 32, 32, dtype=torch.uint8), torch.arange(BATCH) % 10)
    config = pni_config(**changes)
    trainer = Trainer(pni.inject(pni.create_model("resnet20"), "W"), data, config)
    x, y = _batch(True)
    return lambda: trainer._step(x, y, True)


def _floor_passes(model: torch.nn.Module, params: list, optimizer: torch.optim.Optimizer,
                  x: torch.Tensor, y: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        labels = model(x).argmax(1)
    for p in params:
        p.requires_grad_(False)
    xi = x
    for _ in range(STEPS):
        xi = xi.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi), labels, reduction="sum"), xi)
        xi = xi + STEP * g.sign()
    for p in params:
        p.requires_grad_(True)
    model.train()
    loss = 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(xi.detach()), y)
    loss.backward()
    optimizer.step()


def make_floor(graph: bool) -> Step:
    """The bare passes of the plain model (no noise), channels_last; eager or as a graph."""
    if graph and DEVICE.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    torch.manual_seed(0)
    model = pni.create_model("resnet20").to(DEVICE, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    params = list(model.parameters())
    x, y = _batch(True)

    def eager() -> None:
        optimizer.zero_grad(set_to_none=True)
        _floor_passes(model, params, optimizer, x, y)

    if not graph:
        return eager
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            eager()
    torch.cuda.current_stream().wait_stream(side)
    optimizer.zero_grad(set_to_none=True)
    recorded = torch.cuda.CUDAGraph()
    with torch.cuda.graph(recorded):
        _floor_passes(model, params, optimizer, x, y)
    keep = (model, optimizer, x, y)  # the graph replays into their memory: keep them alive

    def replay() -> None:
        recorded.replay()
        assert keep
    return replay


def make_original() -> Step:
    """The original code's way: deep copy per batch, parameter gradients at every PGD step, NCHW."""
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20"), "W").to(DEVICE)
    optimizer = torch.optim.SGD(pni.param_groups(model, 3e-4), lr=0.01, momentum=0.9, nesterov=True)
    x, y = _batch(False)

    return lambda: original_way_step(model, optimizer, x, y)


VARIANTS: dict[str, Callable[[], Step]] = {
    "pni-graph": lambda: make_pni(),
    "pni-graph-bf16": lambda: make_pni(precision="bf16"),
    "pni-eager": lambda: make_pni(cuda_graphs=False),
    "floor-graph": lambda: make_floor(True),
    "floor-eager": lambda: make_floor(False),
    "original": make_original,
}
COMPILED = {"pni-compile": lambda: make_pni(compile=True)}


def make_pni_recorded_with(**flags: Any) -> Step:
    """pni's graphed step recorded under a process-wide backend flag (``cudnn_benchmark``,
    ``precision="tf32"``); the flags go back to the defaults once the graph holds its kernels, so the
    other variants keep true float32 with cuDNN's heuristics."""
    step = make_pni(**flags)
    try:
        for _ in range(4):  # warm-up and recording with the flag's kernels
            step()
        sync()
    finally:
        from pni.training.cuda_graphs import configure_backends
        configure_backends(DEVICE)
    return step


# last: the variants above keep the default backend flags
VARIANTS["pni-graph-autotune"] = lambda: make_pni_recorded_with(cudnn_benchmark=True)
VARIANTS["pni-graph-tf32"] = lambda: make_pni_recorded_with(precision="tf32")


def time_steps(rounds: int, steps: int, variants: dict[str, Callable[[], Step]]
               ) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds per step of every variant that could be built (interleaved rounds)."""
    built: dict[str, Step] = {}
    errors: dict[str, str] = {}
    for name, make in variants.items():
        try:
            fn = make()
            for _ in range(4):  # warm-up: graph recording, cuDNN autotuning
                fn()
            sync()
            built[name] = fn
        except Exception as error:  # a variant that fails is reported, the others still run
            errors[name] = f"{type(error).__name__}: {error}"[:300]
    samples: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, fn in built.items():
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync()
            samples[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(s) for name, s in samples.items()}, errors


def real_epoch(n_images: int = TRAIN_IMAGES, **changes: Any) -> dict[str, float]:
    """One full epoch as ``pni train`` runs it: 50,000 CIFAR-sized uint8 images on the GPU,
    crop+flip there, the per-epoch clean/PGD-7 evaluation on 1,000 images."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n_images,), generator=g)
    test = (images[:1000], labels[:1000])
    config = pni_config(eval_subset=1000, **changes)
    trainer = Trainer(pni.inject(pni.create_model("resnet20"), "W"), (images, labels), config, test)
    sync()
    start = time.perf_counter()
    record = trainer.run_epoch(0)
    sync()
    total = time.perf_counter() - start
    scale = TRAIN_IMAGES / n_images  # a shorter epoch (a CPU check) is scaled to 50,000 images
    train = record["train_seconds"] * scale
    return {"epoch_seconds": train + total - record["train_seconds"], "train_seconds": train,
            "eval_seconds": total - record["train_seconds"], "images_timed": n_images}


def bf16_accuracy(data_dir: str, train_n: int, epochs: int) -> dict[str, Any]:
    """ResNet-20 PNI-W, PGD-7 AT, float32 vs bf16, same seed and data: clean / PGD-7 accuracy."""
    from pni.training.trainer import build_model, fit

    train = pni.load_dataset("imagefolder", "train", data_dir)
    test = pni.load_dataset("imagefolder", "test", data_dir)
    train = train.subset(train_n)
    results: dict[str, Any] = {"train_images": len(train), "epochs": epochs}
    for label, bf16 in (("float32", False), ("bf16", True)):
        torch.manual_seed(0)
        config = pni_config(precision="bf16" if bf16 else "float32", epochs=epochs, milestones=[], eval_subset=1000, lr=0.1)
        model = build_model(config, train)
        start = time.perf_counter()
        result = fit(model, train, config, test)
        results[label] = {"clean": result.last["test_clean_acc"], "pgd": result.last["test_pgd_acc"],
                          "seconds": time.perf_counter() - start}
    return results


# --- report ------------------------------------------------------------------------------

def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    env = report["environment"]
    parts = [f"## {env['date']}: {env['gpu']} (torch {env['torch']}, CUDA {env['cuda']})", ""]
    tests = report.get("cuda_tests")
    if tests:
        parts += [f"**cuda tests** (`pytest -m cuda tests/test_cuda.py`): {tests['summary']} "
                  f"(exit {tests['returncode']}, {tests['seconds']:.0f} s)", ""]
    step = report.get("step_seconds", {})
    if step:
        rows = []
        for name, seconds in step.items():
            rows.append([name, f"{1000 * seconds:.2f}", f"{BATCH / seconds:,.0f}",
                         f"{EPOCHS * math.ceil(TRAIN_IMAGES / BATCH) * seconds / 60:.1f}"])
        parts += [f"**ResNet-20, batch {BATCH}, PGD-{STEPS} adversarial training step** "
                  f"(median of {report['rounds']} rounds x {report['steps']} steps):", "",
                  _md_table(["variant", "ms / step", "images / s", "160 epochs, steps only (min)"], rows), ""]
        ratios = []
        for a, b, label in (("original", "pni-graph", "original way / pni (default)"),
                            ("pni-graph", "floor-graph", "pni / floor, both graphed"),
                            ("pni-eager", "floor-eager", "pni / floor, both eager"),
                            ("pni-eager", "pni-graph", "eager / graph"),
                            ("pni-graph", "pni-graph-bf16", "float32 / bf16"),
                            ("pni-graph", "pni-graph-tf32", "float32 / TF32"),
                            ("pni-compile", "pni-graph", "torch.compile / graph"),
                            ("pni-graph-autotune", "pni-graph", "cuDNN autotuned / heuristics")):
            if a in step and b in step:
                ratios.append([label, f"{step[a] / step[b]:.2f}"])
        parts += [_md_table(["ratio (time)", "value"], ratios), ""]
    for name, error in report.get("errors", {}).items():
        parts.append(f"- variant `{name}` failed: `{error}`")
    epoch = report.get("epoch")
    if epoch:
        minutes = EPOCHS * epoch["epoch_seconds"] / 60
        parts += ["", f"**One real epoch** (50,000 uint8 images on the GPU, crop+flip there, per-epoch "
                  f"clean + PGD-7 evaluation on 1,000 images; default settings): "
                  f"{epoch['epoch_seconds']:.1f} s ({epoch['train_seconds']:.1f} s training, "
                  f"{epoch['eval_seconds']:.1f} s evaluation). **Projected 160 epochs: {minutes:.0f} min.**", ""]
    acc = report.get("bf16_accuracy")
    if acc:
        rows = [[label, f"{100 * acc[label]['clean']:.2f}", f"{100 * acc[label]['pgd']:.2f}",
                 f"{acc[label]['seconds']:.0f}"] for label in ("float32", "bf16")]
        parts += [f"**bf16 vs float32 at smoke scale** (CIFAR-10 JPEG copy, ResNet-20 PNI-W, "
                  f"{acc['train_images']:,} images x {acc['epochs']} epochs, PGD-7 AT, same seed; "
                  f"1,000 test images):", "",
                  _md_table(["precision", "clean %", "PGD-7 %", "seconds"], rows), ""]
    return "\n".join(parts).rstrip() + "\n"


def environment() -> dict[str, str]:
    name, memory = platform.processor() or "CPU", 0.0
    if DEVICE.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        name, memory = props.name, props.total_memory / 2**30
    return {"date": time.strftime("%Y-%m-%d"), "gpu": name, "torch": torch.__version__,
            "cuda": str(torch.version.cuda), "python": platform.python_version(),
            "memory_gib": f"{memory:.0f}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--data", default=None, help="CIFAR-10 image folder for the bf16 accuracy check")
    parser.add_argument("--bf16-train-n", type=int, default=10_000)
    parser.add_argument("--bf16-epochs", type=int, default=5)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--tests-timeout", type=int, default=240)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute to compile)")
    parser.add_argument("--epoch-images", type=int, default=TRAIN_IMAGES, help="images of the real epoch")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only checks this script itself")
    parser.add_argument("--variants", default=None, help="comma-separated step variants (default: all)")
    parser.add_argument("--no-epoch", action="store_true", help="skip the real epoch")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: error: no CUDA GPU visible", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"environment": environment(), "rounds": args.rounds, "steps": args.steps}

    def save() -> None:
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "gpu.md").write_text(render(report))

    stages: list[tuple[str, Callable[[], None]]] = []
    if not args.skip_tests:
        stages.append(("cuda tests", lambda: report.update(cuda_tests=run_cuda_tests(args.out, args.tests_timeout))))

    def steps_stage(variants: dict[str, Callable[[], Step]]) -> None:
        step, errors = time_steps(args.rounds, args.steps, variants)
        report.setdefault("step_seconds", {}).update(step)
        report.setdefault("errors", {}).update(errors)

    chosen = VARIANTS if args.variants is None else {
        name: {**VARIANTS, **COMPILED}[name] for name in args.variants.split(",")}
    stages.append(("step timing", lambda: steps_stage(chosen)))
    if not args.no_epoch:
        stages.append(("real epoch", lambda: report.update(epoch=real_epoch(args.epoch_images))))
    if args.data:
        stages.append(("bf16 accuracy", lambda: report.update(
            bf16_accuracy=bf16_accuracy(args.data, args.bf16_train_n, args.bf16_epochs))))
    if args.compile:  # last: compiling takes about a minute
        stages.append(("compile timing", lambda: steps_stage(COMPILED)))
    for name, stage in stages:
        started = time.perf_counter()
        try:
            stage()
        except Exception as error:  # keep what the other stages measured
            report.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"[:500]
        print(f"[gpu.py] {name}: {time.perf_counter() - started:.1f} s", flush=True)
        save()
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
