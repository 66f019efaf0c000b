"""Several training runs at once in one process: ``train_concurrently(configs, outs)``.

One small run (a ResNet-20 at batch 128) uses a few percent of a large GPU; the spare
capacity is in running several. Each run here is an ordinary ``Trainer`` with its own model,
optimizer, schedule, data loader, run folder (its lock, log, checkpoints, resume) and its own
random streams; the runs advance in turn, one training step each (``Trainer.fit_steps`` is
``fit`` as a generator that yields after every step). Before a run's step its random state
(torch CPU and CUDA, Python's ``random``, numpy) and its CUDA backend settings are swapped in,
after it they are captured again, so every run draws exactly what it would draw alone: K runs
trained together give the same checkpoints and logs as each trained alone (bitwise on CPU,
``tests/test_concurrent.py``), but for the wall times: each epoch's log record also says how
many runs shared them (``concurrent``, when more than one).

On CUDA each run's work is queued on its own stream, so the steps of different runs (each
usually one CUDA-graph replay, ``cuda_graphs.GraphedStep``) may overlap on the GPU while Python
goes on to the next run. Each run also has its own CUDA generator *state object*
(``Generator.graphsafe_set_state``, swapped in around its steps) rather than its values
swapped into one: a captured graph registers the state that was current at capture and, at
each replay, writes that state's seed and offset into tensors of that state which the graph's
kernels read later on their stream; with one state shared by all runs, a replay of run B on
its stream could overwrite them before run A's kernels read them. Not yet measured on a GPU
(docs/GPU.md says what to measure; ``tests/test_concurrent.py`` has the CUDA check).

A signal (SIGTERM/SIGINT) is caught once for all runs: each run writes a mid-epoch checkpoint
after its current step and stops; ``TrainingInterrupted`` is raised when all have. A run that
fails (diverged) ends alone; the others train on, and the first error is raised at the end.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig, effective_precision
from ..data import Dataset, load_dataset
from ..seeding import rng_state, seed_everything, set_rng_state
from .cuda_graphs import configure_backends
from .run import DatasetLoader, train_data
from .run_folder import TrainingInterrupted
from .stop_signal import StopRequest
from .trainer import Steps, Trainer, TrainResult, build_model

__all__ = ["ConcurrentRun", "train_concurrently"]


@dataclass
class ConcurrentRun:
    """One of the runs ``train_concurrently`` advances: its trainer, step generator, random
    state between steps and (on CUDA) stream; ``result`` or ``error`` once it has ended."""

    config: TrainConfig
    out: Path
    trainer: Trainer
    steps: Steps
    rng: dict[str, Any]
    stream: Any = None
    cuda_state: Any = None  # this run's CUDA generator state object (graph-safe), on CUDA
    result: TrainResult | None = None
    error: BaseException | None = None
    step_count: int = 0
    done: bool = field(default=False)


def _per_run(value: Any, count: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"train_concurrently: {name} has {len(value)} values for {count} runs")
        return list(value)
    return [value] * count


def _cuda_generator(device: torch.device) -> torch.Generator:
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.default_generators[index]


def _host_rng() -> dict[str, Any]:
    """The random state but CUDA's (on CUDA each run has its own generator state object)."""
    state = rng_state()
    state.pop("cuda", None)
    return state


def _stream_context(run: ConcurrentRun) -> contextlib.AbstractContextManager:
    return torch.cuda.stream(run.stream) if run.stream is not None else contextlib.nullcontext()


def _start(config: TrainConfig, out: Path, resume: bool, overwrite: bool, max_minutes: float | None,
           save_every_minutes: float | None, data: tuple[Dataset, Dataset] | None, load: DatasetLoader,
           stop: StopRequest) -> ConcurrentRun:
    """Builds one run exactly as ``train_run`` does (seed, data, model, trainer), then keeps
    its random state for its first step."""
    seed_everything(config.seed)
    train_set, test_set = data if data is not None else train_data(config, load)
    model = build_model(config, train_set)
    trainer = Trainer(model, train_set, config, test_set, out)
    if trainer.folder is not None:
        trainer.folder.stop = stop  # one handler for every run, installed by train_concurrently
    steps = trainer.fit_steps(resume=resume, overwrite=overwrite, max_minutes=max_minutes,
                              save_every_minutes=save_every_minutes, catch_signals=False)
    stream = cuda_state = None
    if trainer.device.type == "cuda":
        stream = torch.cuda.Stream(device=trainer.device)
        stream.wait_stream(torch.cuda.current_stream(trainer.device))  # the model and data copies
        cuda_state = _cuda_generator(trainer.device).clone_state()  # seeded as train_run seeds it
    return ConcurrentRun(config, out, trainer, steps, _host_rng() if stream is not None else rng_state(),
                         stream, cuda_state)


def _advance(run: ConcurrentRun) -> None:
    """One step of ``run`` with its random state and backend settings swapped in."""
    trainer = run.trainer
    set_rng_state(run.rng)
    if run.cuda_state is not None:
        _cuda_generator(trainer.device).graphsafe_set_state(run.cuda_state)
    configure_backends(trainer.device, effective_precision(trainer.config.precision, trainer.device.type),
                       torch.are_deterministic_algorithms_enabled(), trainer.config.cudnn_benchmark)
    try:
        with _stream_context(run):
            next(run.steps)
        run.step_count += 1
    except StopIteration as finished:
        run.result, run.done = finished.value, True
    except Exception as error:  # this run ends; the others go on (raised at the end)
        run.error, run.done = error, True
    finally:
        run.rng = _host_rng() if run.cuda_state is not None else rng_state()
    if run.done and run.stream is not None:
        torch.cuda.current_stream(trainer.device).wait_stream(run.stream)


def train_concurrently(configs: Sequence[TrainConfig], outs: Sequence[str | Path], *,
                       resume: bool | Sequence[bool] = False, overwrite: bool | Sequence[bool] = False,
                       max_minutes: float | None = None, save_every_minutes: float | None = None,
                       data: tuple[Dataset, Dataset] | None = None,
                       load: DatasetLoader = load_dataset) -> list[TrainResult]:
    """Trains the runs ``configs`` into the run folders ``outs`` together, one step of each in
    turn; returns their TrainResults in order. Each run is what ``train_run(config, out)``
    would make of it alone (same checkpoints and logs), with ``resume`` and ``overwrite`` per
    run (one value or one per run), ``max_minutes`` (wall time, shared by all: each run stops
    after the last epoch that fits) and ``save_every_minutes`` as ``fit`` takes them; ``data``
    (train, test) for every run, else each run's ``train_data(config, load)``.

    Raises the first run's error (TrainingError, RunFolderError, ...) once every other run has
    ended; after a signal, TrainingInterrupted once every run has written its checkpoint."""
    if len(configs) != len(outs):
        raise ValueError(f"train_concurrently: {len(configs)} configs for {len(outs)} run folders")
    folders = [Path(out).resolve() for out in outs]
    if len(set(folders)) != len(folders):
        raise ValueError("train_concurrently: two runs share a run folder")
    resumes = _per_run(resume, len(configs), "resume")
    overwrites = _per_run(overwrite, len(configs), "overwrite")
    stop = StopRequest()
    runs: list[ConcurrentRun] = []
    devices = {torch.device(c.device) for c in configs if c.device.startswith("cuda")}
    generators = [_cuda_generator(d) for d in devices] if torch.cuda.is_available() else []
    saved = [(g, g.graphsafe_get_state()) for g in generators]  # put back at the end
    try:
        with stop.installed():
            for config, out, res, over in zip(configs, outs, resumes, overwrites):
                runs.append(_start(config, Path(out), res, over, max_minutes, save_every_minutes, data, load, stop))
            active = list(runs)
            while active:
                for run in active:
                    run.trainer.concurrent = len(active)  # logged with each epoch's wall seconds
                    _advance(run)
                active = [run for run in active if not run.done]
    finally:
        for run in runs:
            if not run.done:  # an error outside a step (KeyboardInterrupt): release the folders
                run.steps.close()
        for generator, state in saved:
            generator.graphsafe_set_state(state)
    errors = [run.error for run in runs if run.error is not None]
    interrupted = [e for e in errors if isinstance(e, TrainingInterrupted)]
    failures = [e for e in errors if not isinstance(e, TrainingInterrupted)]
    if failures:
        raise failures[0]
    if interrupted:
        raise interrupted[0]
    results = [run.result for run in runs if run.result is not None]
    for run, result in zip(runs, results):
        result.model = run.trainer.net  # as train_run
    return results
