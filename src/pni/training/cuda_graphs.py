"""The whole adversarial training step as one CUDA graph, and the CUDA backend settings.

A ResNet-20 step of PGD-7 adversarial training (Eq. 10-12) is about 20 small passes of a
small network: on a GPU its time goes into launching several thousand kernels from
Python, not into computing them. ``GraphedStep`` records the step once (clean forward,
PGD with the noise on, adversarial forward, backward, SGD update) with
``torch.cuda.graph`` and then replays it per batch with a single launch. It computes the
same function as ``Trainer.train_step``:

- fresh noise at every replay: the CUDA generator's Philox offset advances at each
  replay exactly as the eager kernels advance it, so replay and eager draw alike;
- the learning rate is a Python float inside ``torch.optim.SGD``, so the step is
  recorded again whenever it changes (at the schedule's milestones) or the adversarial
  switch or batch shape changes; the last, smaller batch of an epoch runs eagerly;
- the recording needs warm-up: the first ``warmup`` steps of a process run eagerly on a
  side stream (cuDNN picks its algorithms, SGD creates its momentum buffers);
- the loss and alphas are checked after each replay (the update is already applied, but a
  non-finite state is never saved: the trainer raises before the next checkpoint).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

StepBody = Callable[[Tensor, Tensor, bool], tuple[Tensor, dict[str, Tensor]]]


def configure_backends(device: torch.device, precision: str = "float32", deterministic: bool = False,
                       cudnn_benchmark: bool = False) -> None:
    """The CUDA backend flags of a run's ``precision`` (``config.effective_precision``):
    ``tf32`` and ``bf16`` are PyTorch's own defaults (TF32 cuDNN convolutions,
    ``torch.backends.cudnn.allow_tf32 = True``; float32 matmuls), ``float32`` is strict (no
    TF32 anywhere). cuDNN autotuning only when asked. Measured (docs/GPU.md), graphed
    ResNet-20 step: autotuning changed nothing on an H100 (38.1 vs 38.1 ms); on an H200,
    float32 with autotuning took 27.4 ms and torch's defaults (TF32 convolutions,
    heuristics) 18.5 ms. A no-op off CUDA."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark) and not deterministic
    torch.backends.cudnn.allow_tf32 = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = False


def graphs_supported(device: torch.device) -> bool:
    """True where a step can be recorded: a CUDA device, outside torchrun (DDP's reducer
    communicates from the backward and is not recorded here)."""
    return device.type == "cuda" and torch.cuda.is_available()


class GraphedStep:
    """Replays ``body`` (forward losses), its backward and ``optimizer.step()`` as one graph.

    ``body(x, y, adversarial)`` returns ``(loss, stats)`` with no host synchronization;
    ``eager_step(x, y, adversarial)`` is the plain step used for warm-up and odd batches.
    ``check(loss)`` returns a boolean tensor: the loss and every alpha finite after the step.
    """

    def __init__(self, body: StepBody, eager_step: Callable[[Tensor, Tensor, bool], dict[str, Tensor]],
                 optimizer: torch.optim.Optimizer, finite_state: Callable[[Tensor], Tensor],
                 warmup: int = 2) -> None:
        self.body = body
        self.eager_step = eager_step
        self.optimizer = optimizer
        self.finite_state = finite_state
        self.warmup = warmup
        self.captures = 0
        self._eager_done = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._key: tuple[Any, ...] | None = None
        self._static: dict[str, Any] = {}
        self.failure: str | None = None  # why recording failed (then every step is eager)
        self._side: torch.cuda.Stream | None = None  # the eager steps' stream

    def _recording_key(self, x: Tensor, adversarial: bool) -> tuple[Any, ...]:
        lrs = tuple(float(group["lr"]) for group in self.optimizer.param_groups)
        return tuple(x.shape), x.dtype, adversarial, lrs

    def _eager(self, x: Tensor, y: Tensor, adversarial: bool) -> dict[str, Tensor]:
        # one side stream for every eager step, as PyTorch's warm-up recipe has it (a new stream
        # per step is the likely cause of autograd's "AccumulateGrad stream does not match"
        # warning seen on the GPU; not yet confirmed there)
        if self._side is None:
            self._side = torch.cuda.Stream(device=x.device)
        side = self._side
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            stats = self.eager_step(x, y, adversarial)
        torch.cuda.current_stream(x.device).wait_stream(side)
        self._eager_done += 1
        return stats

    def _capture(self, x: Tensor, y: Tensor, adversarial: bool) -> None:
        self._graph = None
        static_x, static_y = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, stats = self.body(static_x, static_y, adversarial)
            loss.backward()
            self.optimizer.step()
            finite = self.finite_state(loss)
        self._graph = graph
        self._static = {"x": static_x, "y": static_y, "stats": stats, "finite": finite, "loss": loss}
        self.captures += 1

    def __call__(self, x: Tensor, y: Tensor, adversarial: bool, full_batch: bool) -> tuple[dict[str, Tensor], Tensor | None]:
        """One training step; returns its stats (device tensors) and, after a replay, the
        finite-state flag to check (None after an eager step, which checks itself)."""
        if not full_batch or self._eager_done < self.warmup or self.failure is not None:
            return self._eager(x, y, adversarial), None
        key = self._recording_key(x, adversarial)
        if self._graph is None or key != self._key:
            try:
                self._capture(x, y, adversarial)
            except RuntimeError as error:  # an op that cannot be recorded: eager from now on
                self.failure = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                self.release()
                torch.cuda.synchronize(x.device)
                return self._eager(x, y, adversarial), None
            self._key = key
        static = self._static
        static["x"].copy_(x)
        static["y"].copy_(y)
        assert self._graph is not None
        self._graph.replay()
        stats = {k: v.clone() for k, v in static["stats"].items()}
        stats["loss"] = static["loss"].detach().clone()
        return stats, static["finite"].clone()  # the next replay overwrites the static flag

    def release(self) -> None:
        """Frees the recorded graph and its memory pool."""
        self._graph = None
        self._static = {}
        self._key = None
