"""The CUDA path (marked ``cuda``; skipped without a GPU). ``benchmarks/gpu.py`` runs them.

Noise at every location and granularity, the alpha gradient (Eq. 7-8) against a float64
CPU reference on the same draws, the BatchNorm fold, the attacks, training with resume
(deterministic flags), the CUDA-graph step against the eager step, bf16, torch.compile,
DDP on one GPU (gloo, 2 processes) and nccl (1 process), GPU-resident data.
"""
from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: determinism

import pytest
import torch
import torch.nn.functional as F

import pni
import pni.noise as noise_module
from pni.attacks import cw_l2, fgsm, pgd, zoo
from pni.checkpoint import read_checkpoint
from pni.config import TrainConfig
from pni.data import BatchLoader
from pni.models import fold
from pni.training.trainer import Trainer, build_model, fit

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
DEVICE = torch.device("cuda")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _strict_float32():
    """True float32 (no TF32) in every test here, restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def mnist():
    train = pni.load_dataset("mnist-sample", "train")
    test = pni.load_dataset("mnist-sample", "test")
    return train, test


def _images(n: int, shape=(3, 32, 32), seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


# --- noise ------------------------------------------------------------------------------

@pytest.mark.parametrize("granularity", pni.GRANULARITIES)
@pytest.mark.parametrize("location", pni.LOCATIONS)
def test_every_location_and_granularity_forward_backward(location, granularity):
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20"), location, granularity).to(DEVICE)
    model.to(memory_format=torch.channels_last).train()
    x = _images(8).contiguous(memory_format=torch.channels_last)
    out_a, out_b = model(x), model(x)
    assert out_a.device.type == "cuda" and torch.isfinite(out_a).all()
    assert not torch.equal(out_a, out_b)  # fresh noise at every call
    F.cross_entropy(out_a, torch.zeros(8, dtype=torch.long, device=DEVICE)).backward()
    grads = [a.grad for a in pni.alpha_parameters(model)]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    with pni.noise_enabled(model, False):
        model.eval()
        assert torch.equal(model(x), model(x))


def test_alpha_gradient_matches_float64_cpu_reference_on_the_same_draws(monkeypatch):
    """Eq. 7-8: autograd's dL/dalpha on the GPU in float32 equals the float64 CPU value
    computed with the very same noise draws."""
    torch.manual_seed(0)
    gpu_model = pni.inject(pni.create_model("resnet20"), "W+A-a", "channel").to(DEVICE).eval()
    cpu_model = copy.deepcopy(gpu_model).to("cpu", torch.float64)
    draws: list[torch.Tensor] = []
    original = noise_module.standard_normal_like

    def recording(v):
        eta = original(v)
        draws.append(eta.detach().to("cpu", torch.float64))
        return eta

    monkeypatch.setattr(noise_module, "standard_normal_like", recording)
    x = _images(16)
    y = torch.arange(16, device=DEVICE) % 10
    F.cross_entropy(gpu_model(x), y, reduction="sum").backward()
    replay = iter(draws)
    monkeypatch.setattr(noise_module, "standard_normal_like", lambda v: next(replay))
    F.cross_entropy(cpu_model(x.cpu().double()), y.cpu(), reduction="sum").backward()
    assert next(replay, None) is None  # every draw used once, in the same order
    for (key, a_gpu), a_cpu in zip(pni.alphas(gpu_model).items(), pni.alphas(cpu_model).values()):
        ref = a_cpu.grad
        err = (a_gpu.grad.double().cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)
        assert err < 2e-3, f"{key}: relative error {float(err):.2e}"


def test_batchnorm_fold_equals_unfolded_model():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("resnet20"), "W").to(DEVICE).eval()
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = _images(32)
    torch.manual_seed(1)
    plain = model(x)
    torch.manual_seed(1)
    with fold.folded_batchnorm(model) as pairs:
        folded = model(x)
    assert pairs > 0
    assert torch.allclose(plain, folded, atol=2e-4, rtol=1e-4)


# --- attacks ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet(mnist):
    torch.manual_seed(0)
    train, test = mnist
    config = TrainConfig(model="lenet5", dataset="mnist-sample", epochs=2, batch_size=64, lr=0.02,
                         milestones=[], eps=0.2, step_size=0.05, steps=3, train_subset=1024,
                         eval_subset=0, device="cuda", progress=False, precision="float32")
    model = build_model(config, train)
    fit(model, train.subset(list(range(1024))), config)
    model.eval()
    x, y = test.tensors()
    return model, x[:64].to(DEVICE), y[:64].to(DEVICE)


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_pgd_fgsm_eot_on_cuda(lenet):
    model, x, y = lenet
    for x_adv in (pgd(model, x, y, 0.2, 0.05, 10), fgsm(model, x, y, 0.2), pgd(model, x, y, 0.2, 0.05, 5, eot=4)):
        assert x_adv.device.type == "cuda"
        assert (x_adv - x).abs().max() <= 0.2 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    torch.manual_seed(0)
    clean = _accuracy(model, x, y)
    assert _accuracy(model, pgd(model, x, y, 0.2, 0.05, 10), y) < clean


def test_cw_and_zoo_on_cuda(lenet):
    model, x, y = lenet
    result = cw_l2(model, x[:16], y[:16], c=1.0, lr=0.05, steps=30, binary_search_steps=2)
    assert result.x_adv.device.type == "cuda" and result.success.any()
    assert torch.isfinite(result.l2).all()
    z = zoo(model, x[:4], y[:4], steps=20, coords=64, batch_size=4)
    assert z.x_adv.device.type == "cuda" and torch.isfinite(z.x_adv).all()


def test_autoattack_rand_on_cuda(lenet):
    pytest.importorskip("pyautoattack")
    from pni.attacks import autoattack

    model, x, y = lenet
    result = autoattack(model, x[:32], y[:32], 0.2, "rand", n_iter=10, eot_iter=2, votes=3)
    assert result.x_adv.device.type == "cuda"
    assert (result.x_adv - x[:32]).abs().max() <= 0.2 + 1e-5


# --- data -------------------------------------------------------------------------------

def test_loader_keeps_uint8_on_the_gpu_and_augments_there_without_host_sync():
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (300,))
    loader = BatchLoader((images, labels), 128, shuffle=True, augment="crop-flip", device=DEVICE,
                         channels_last=True)
    first = next(iter(loader))  # moves the data once
    assert loader._images.device.type == "cuda" and loader._images.dtype == torch.uint8
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [len(b[1]) for b in batches] == [128, 128, 44]
    x = batches[0][0]
    assert x.device.type == "cuda" and x.dtype == torch.float32 and x.max() <= 1
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert first[0].shape == x.shape


# --- training ---------------------------------------------------------------------------

def _train_config(**changes) -> TrainConfig:
    values = dict(model="lenet5", dataset="mnist-sample", epochs=2, batch_size=64, lr=0.02,
                  milestones=[1], eps=0.2, step_size=0.05, steps=3, eval_subset=64, device="cuda",
                  progress=False, seed=3, precision="float32")
    values.update(changes)
    return TrainConfig(**values)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _run(config: TrainConfig, data, out: Path, resume: bool = False, epochs: int | None = None):
    torch.manual_seed(config.seed)
    train, test = data
    cfg = config if epochs is None else TrainConfig(**{**config.to_dict(), "epochs": epochs})
    model = build_model(cfg, train)
    return fit(model, train.subset(list(range(320))), cfg, test, out_dir=out, resume=resume)


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True, warn_only=True)
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda-graphs"])
def test_resume_gives_the_uninterrupted_weights(mnist, tmp_path, deterministic, graphs):
    config = _train_config(cuda_graphs=graphs)
    _run(config, mnist, tmp_path / "whole")
    _run(config, mnist, tmp_path / "split", epochs=1)
    _run(config, mnist, tmp_path / "split", resume=True)
    assert _max_diff(_weights(tmp_path / "whole" / "checkpoint.pt"),
                     _weights(tmp_path / "split" / "checkpoint.pt")) == 0.0


def test_cuda_graph_step_computes_the_eager_step(mnist, tmp_path, deterministic):
    """Same seed, graphs on and off: the same weights after two epochs (one milestone, so
    the step is recorded twice), up to float rounding."""
    eager = _run(_train_config(cuda_graphs=False), mnist, tmp_path / "eager")
    graphed = _run(_train_config(cuda_graphs=True), mnist, tmp_path / "graphed")
    diff = _max_diff(_weights(tmp_path / "eager" / "checkpoint.pt"),
                     _weights(tmp_path / "graphed" / "checkpoint.pt"))
    assert diff < 1e-4, f"max weight difference {diff:.3e}"
    assert abs(eager.last["train_loss"] - graphed.last["train_loss"]) < 1e-4


def test_replayed_step_does_not_synchronize_and_catches_non_finite_state(mnist):
    train, _ = mnist
    config = _train_config(eval_subset=0)
    trainer = Trainer(build_model(config, train), train.subset(list(range(256))), config)
    assert trainer.graphed is not None
    batches = list(trainer.loader)
    for x, y in batches[:3]:  # 2 warm-up steps, then the recording
        trainer._step(x, y, True)
    x, y = batches[3]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats, finite = trainer._step(x, y, True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.graphed.captures == 1 and bool(finite)
    with torch.no_grad():
        pni.alpha_parameters(trainer.net)[0].fill_(float("nan"))
    _, finite = trainer._step(x, y, True)
    with pytest.raises(pni.training.TrainingError, match="non-finite"):
        trainer._check_finite(finite)


def test_bf16_training_runs_and_learns(mnist, tmp_path):
    result = _run(_train_config(precision="bf16", epochs=2), mnist, tmp_path / "bf16")
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] + 0.5


def test_torch_compile_of_the_noisy_model():
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W").to(DEVICE).eval()
    compiled = torch.compile(model)
    x = torch.rand(16, 1, 28, 28, device=DEVICE)
    with pni.noise_enabled(model, False):
        assert torch.allclose(compiled(x), model(x), atol=1e-4, rtol=1e-4)
    a, b = compiled(x), compiled(x)
    assert not torch.equal(a, b)  # the noise is still drawn per call
    a.sum().backward()
    assert all(p.grad is not None for p in pni.alpha_parameters(model))


# --- distributed ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_two_processes_share_one_gpu_with_gloo(tmp_path):
    env = {**os.environ, "PNI_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "pni", "train",
               "--preset", "mnist-lenet", "--scale", "smoke", "--device", "cuda", "--progress", "false",
               "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert checkpoint["world_size"] == 2


NCCL_SCRIPT = """
import torch, torch.distributed as dist
from pni import distributed
dist.init_process_group("nccl", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
torch.cuda.set_device(0)
t = torch.ones(3, device="cuda")
dist.all_reduce(t)
assert t.tolist() == [1.0, 1.0, 1.0] and distributed._comm_device().type == "cuda"
dist.destroy_process_group()
print("nccl ok")
"""


def test_nccl_process_group_on_one_gpu():
    if not torch.distributed.is_nccl_available():
        pytest.skip("this PyTorch build has no nccl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", NCCL_SCRIPT.format(port=_free_port())], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "nccl ok" in proc.stdout, proc.stderr[-3000:]
