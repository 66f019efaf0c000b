"""Multi-GPU / multi-node runs with ``torchrun``: the process group and its small helpers.

``torchrun --nproc_per_node=N -m pni train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init` joins
them into one process group (``gloo`` on CPU, ``nccl`` on CUDA with rank device
``cuda:LOCAL_RANK``). Training wraps the model in PyTorch's ``DistributedDataParallel``
(:func:`wrap`); everything here is a thin layer over ``torch.distributed``.

Choices made for PNI training (see ``pni.train``):

- Gradients are averaged by DDP once per step, after the one backward of
  ``w_clean * CE(clean) + w_adv * CE(adv)``; the PGD attack between the two forwards runs on
  the unwrapped module with its parameters frozen, so it never touches DDP's reducer.
- No buffer sync at each forward (``forward_sync_buffers=False``, ``broadcast_buffers=False``
  before torch 2.13): DDP would otherwise broadcast rank 0's BatchNorm statistics before
  each of the two forwards of a step; buffers are still synced once, at the start. Each
  rank keeps its own running statistics during an epoch and :func:`average_buffers`
  averages them at the end of every epoch, before the per-epoch evaluation and the
  checkpoint, so all ranks agree again.
  ``sync_bn=True`` (CUDA only) uses SyncBatchNorm instead: batch statistics over the
  global batch.
- Noise draws differ across ranks (:func:`rank_seed`); the alphas are ordinary parameters,
  averaged and updated like the weights.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .seeding import rank_seed  # noqa: F401  (pni.distributed.rank_seed)
from .errors import PNIError

T = TypeVar("T")

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(PNIError):
    """A distributed launch that cannot work (missing torchrun variable, no such GPU, ...)."""


def launched() -> bool:
    """True when this process is one of several started by ``torchrun`` (``WORLD_SIZE > 1``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def is_initialized() -> bool:
    """True when a process group with more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that prints and writes files."""
    return rank() == 0


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise DistributedError(f"environment variable {name} is not set: launch with "
                               f"`torchrun --nproc_per_node=N -m pni ...`, which sets "
                               f"{', '.join(ENV_VARS)}")
    try:
        return int(value)
    except ValueError as error:
        raise DistributedError(f"environment variable {name}={value!r}: expected an integer") from error


def rank_device(device: str | torch.device) -> torch.device:
    """The device of this rank: ``cuda`` (any index) becomes ``cuda:LOCAL_RANK`` when
    several processes run, one GPU per process; other devices are kept."""
    device = torch.device(device)
    if device.type != "cuda" or not (launched() or is_initialized()):
        return device
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.cuda.is_available():
        raise DistributedError(f"device {str(device)!r} requested but CUDA is not available; "
                               f"use device cpu (gloo backend)")
    if backend_override() == "gloo":  # gloo lets processes share a GPU (tests, debugging)
        return torch.device("cuda", index % torch.cuda.device_count())
    if index >= torch.cuda.device_count():
        raise DistributedError(f"LOCAL_RANK={index} but this node has {torch.cuda.device_count()} "
                               f"GPU(s): use --nproc_per_node <= {torch.cuda.device_count()}")
    return torch.device("cuda", index)


def init(device: str | torch.device = "cpu") -> torch.device:
    """Joins the torchrun process group if this process was launched by torchrun with
    ``WORLD_SIZE > 1`` and has not joined yet; returns this rank's device.

    The backend is ``nccl`` for a CUDA device (rank device ``cuda:LOCAL_RANK``) and
    ``gloo`` otherwise. Without torchrun it does nothing and returns ``device``.
    """
    device = rank_device(device)
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed support")
    for name in ("RANK", "WORLD_SIZE", "MASTER_PORT"):
        _env_int(name)
    if not os.environ.get("MASTER_ADDR"):
        raise DistributedError("environment variable MASTER_ADDR is not set: launch with "
                               "`torchrun --nproc_per_node=N -m pni ...`")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cuda" and backend_override() != "gloo":
        bind = "device_id" in inspect.signature(dist.init_process_group).parameters  # torch >= 2.3
        dist.init_process_group("nccl", **({"device_id": device} if bind else {}))
    else:
        dist.init_process_group("gloo")
    return device


def backend_override() -> str | None:
    """``PNI_DIST_BACKEND`` (``gloo`` or ``nccl``), or None for the default: nccl on CUDA,
    gloo on the CPU. gloo on CUDA lets several processes share one GPU."""
    value = os.environ.get("PNI_DIST_BACKEND", "").strip().lower() or None
    if value not in (None, "gloo", "nccl"):
        raise DistributedError(f"PNI_DIST_BACKEND={value!r}: expected gloo or nccl")
    return value


def cleanup() -> None:
    """Leaves the process group (if one is up)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def launch(device: str | torch.device = "cpu") -> Iterator[torch.device]:
    """``with launch(device) as rank_device:`` -- :func:`init` on entry and, if it started
    the process group, :func:`cleanup` on exit. A no-op outside torchrun."""
    started = launched() and not (dist.is_available() and dist.is_initialized())
    resolved = init(device)
    try:
        yield resolved
    finally:
        if started:
            cleanup()


# --- collectives (identity in a single process) ----------------------------------------

def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (pickled)."""
    if not is_initialized():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (pickled)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (in float64)."""
    if not is_initialized():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def on_main(fn: Callable[[], T]) -> T:
    """Runs ``fn`` on rank 0 only and hands its result -- or the exception it raised -- to
    every rank, so a user error stops all ranks alike instead of leaving some waiting."""
    if not is_initialized():
        return fn()
    result: Any = None
    error: BaseException | None = None
    if is_main():
        try:
            result = fn()
        except Exception as exc:  # re-raised on every rank below
            error = exc
            try:
                pickle.dumps(exc)
            except Exception:
                error = RuntimeError(f"{type(exc).__name__}: {exc}")
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


# --- training helpers ------------------------------------------------------------------

def split_batch(batch_size: int, world: int) -> int:
    """The per-rank batch for a global ``batch_size``; it must divide evenly."""
    if batch_size % world:
        from .config import ConfigError

        raise ConfigError(f"config field batch_size={batch_size} is the global batch and must be "
                          f"divisible by the number of processes ({world}); choose a multiple of {world}")
    return batch_size // world


def shard_range(n: int, batch_size: int, rank_: int, world: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``n`` samples that ``rank_`` evaluates: whole
    batches of the single-process batch grid, split as evenly as possible in rank order."""
    batches = -(-n // batch_size)
    lo = rank_ * batches // world * batch_size
    hi = (rank_ + 1) * batches // world * batch_size
    return min(lo, n), min(hi, n)


def wrap(model: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel without per-forward buffer sync (see the module
    docstring); ``sync_bn`` first turns its BatchNorm layers into SyncBatchNorm (CUDA only)."""
    if sync_bn:
        if device.type != "cuda":
            from .config import ConfigError

            raise ConfigError("config field sync_bn=True needs CUDA devices (PyTorch's SyncBatchNorm "
                              "has no CPU implementation); train on cuda or set sync_bn false")
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.13 renames broadcast_buffers; both keep the one sync of buffers at start
    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
                      else {"broadcast_buffers": False})
    return ddp(model, device_ids=device_ids, **no_buffer_sync)


def average_buffers(model: nn.Module) -> None:
    """Averages the BatchNorm running statistics over the ranks (in place)."""
    if not is_initialized():
        return
    buffers = [buf for module in model.modules() if isinstance(module, nn.modules.batchnorm._NormBase)
               for buf in (module.running_mean, module.running_var) if buf is not None]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for buf in buffers:
        buf.copy_(flat[offset:offset + buf.numel()].view_as(buf))
        offset += buf.numel()
