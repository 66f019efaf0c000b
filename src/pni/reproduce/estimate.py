"""Time estimates for ``pni reproduce --dry-run``: the training images/s of each model,
measured on this machine (a warm-up batch, then the best of three timed
runs of two batches through ``pni.training.fit``), calibrated by the runs already trained
in the results folder (their ``train_log.jsonl`` records the seconds of every epoch:
a model with such a log uses its logged rate, the others the micro-benchmark scaled by
the median logged/measured ratio), and every other step converted to training-image
equivalents by its passes per image. Estimates, not promises: attacks are counted as
forward+backward passes."""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..runs import RESULTS, TIMING, checkpoint_path, read_config, read_output, read_train_log as train_log
from ..evaluation.estimate import audit_seconds, evaluation_passes, format_duration
from .results_check import read_timing
from .steps import Step


def _finite(value: Any) -> bool:
    """A logged number of seconds that can be summed (a damaged log's strings and NaNs: not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")


SPLIT_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000), "cifar10": (50000, 10000),
               "imagefolder": (50000, 10000), "mnist-sample": (5000, 1000)}
SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "mnist-sample": (1, 28, 28),
          "cifar10": (3, 32, 32), "imagefolder": (3, 32, 32)}


class RateMeter:
    """Measured training images/s per (model, width, input shape, PGD steps, device)."""

    def __init__(self, device: str = "cpu", batch: int = 16) -> None:
        self.device = device
        self.batch = batch
        self._configs: dict[tuple[Any, ...], TrainConfig] = {}
        self.rates: dict[tuple[Any, ...], float] = {}
        self.logged: dict[tuple[Any, ...], list[float]] = {}
        self._ratio: float | None = None

    def calibrate(self, steps: list[Step], out: Path) -> None:
        """Records the training images/s of every run of ``steps`` with a log in ``out``
        trained on this meter's device (``logged_rate``)."""
        for step in steps:
            if step.kind == "train" and step.config is not None:
                rate = logged_rate(out / step.key, step.config, self.device)
                if rate is not None:
                    self._configs.setdefault(self.key(step.config), step.config)
                    self.logged.setdefault(self.key(step.config), []).append(rate)

    def ratio(self) -> float:
        """Median logged / micro-benchmark rate over the models that have both (1 if none)."""
        if self._ratio is None:
            ratios = [statistics.median(v) / self._measured(k) for k, v in self.logged.items()]
            self._ratio = statistics.median(ratios) if ratios else 1.0
        return self._ratio

    def _measured(self, key: tuple[Any, ...]) -> float:
        if key not in self.rates:
            self.rates[key] = self._measure(self._configs[key], key[2])
        return self.rates[key]

    def key(self, config: TrainConfig) -> tuple[Any, ...]:
        return (config.model, config.width, SHAPES.get(config.dataset, (3, 32, 32)),
                config.steps if config.adversarial else 0, noise_cost(config.location))

    def rate(self, config: TrainConfig) -> float:
        """The logged rate of this kind of run when one exists, else the calibrated micro-benchmark."""
        key = self.key(config)
        self._configs.setdefault(key, config)
        if key in self.logged:
            return statistics.median(self.logged[key])
        return self._measured(key) * self.ratio()

    def describe(self) -> str:
        """One line: where the rates come from."""
        def name(k: tuple[Any, ...]) -> str:
            return f"{k[0]}x{k[1]:g} {'x'.join(map(str, k[2]))} PGD-{k[3]}{NOISE_COST_NAMES[k[4]]}"
        logged = ", ".join(f"{name(k)}: {statistics.median(v):.0f} img/s" for k, v in self.logged.items())
        measured = ", ".join(f"{name(k)}: {v:.0f} img/s" for k, v in self.rates.items())
        return (f"training images/s logged by the runs in the results folder: {logged or 'none yet'}; "
                f"measured just now with pni.training.fit on random images: {measured or 'none needed'}; "
                f"unlogged models scaled by the median logged/measured ratio {self.ratio():.2f}; "
                f"attacks counted as forward+backward passes")

    def _measure(self, config: TrainConfig, shape: tuple[int, int, int]) -> float:
        import torch

        from ..data import Dataset
        from ..training.trainer import build_model, fit

        b = self.batch
        cfg = dataclasses.replace(config, epochs=1, milestones=[], warmup_epochs=0, eval_subset=0,
                                  train_subset=None, batch_size=b, progress=False, device=self.device)
        gen = torch.Generator().manual_seed(0)
        times = []
        for n in (b, 2 * b, 2 * b, 2 * b):   # a warm-up batch, then the best of three timings
            images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
            data = Dataset("timing", "train", images, torch.arange(n) % 10, [str(i) for i in range(10)],
                           (0.5,) * shape[0], (0.25,) * shape[0])
            model = build_model(cfg, data)
            started = time.perf_counter()
            fit(model, data, cfg)
            times.append(time.perf_counter() - started)
        return 2 * b / max(min(times[1:]), 1e-6)  # the least-disturbed timing (a shared machine)


NOISE_COST_NAMES = ("", " noise", " activation noise")


def noise_cost(location: str | None) -> int:
    """What a model's noise adds to a pass: 0 none, 1 noise on the weights or the input (a draw
    per weight or input pixel), 2 noise on every layer's activations (a draw per activation
    element: on a ResNet-20 on a CPU, forward passes of PNI-A-a took about twice PNI-W's,
    ``benchmarks/card_batch.py``). Steps of models that differ in it are not estimated alike."""
    if location is None:
        return 0
    return 2 if "A-" in location else 1


def logged_rate(folder: Path, config: TrainConfig, device: str) -> float | None:
    """Training images/s of the run in ``folder``: images over the seconds its
    ``train_log.jsonl`` records (None: no log, or trained on another device)."""
    recorded = read_config(folder)
    if not isinstance(recorded, dict) or str(recorded.get("device") or "cpu").split(":")[0] != device.split(":")[0]:
        return None
    records = [r for r in train_log(folder) if _finite(r.get("train_seconds")) and r["train_seconds"] > 0]
    seconds = sum(float(r["train_seconds"]) for r in records)
    if not records or seconds <= 0:
        return None
    n_train = config.train_subset or SPLIT_SIZES.get(config.dataset, (50000, 10000))[0]
    return n_train * len(records) / seconds


def signature(step: Step, runs: dict[str, Step], meter: RateMeter) -> tuple[Any, ...] | None:
    """What a non-training step costs depends on: its kind, its settings but the run it reads,
    and the kind of model that run is (None for training steps)."""
    if step.kind == "train" or not step.needs or step.needs[0] not in runs:
        return None
    from .steps import digest

    config = runs[step.needs[0]].config
    assert config is not None
    settings = {k: v for k, v in step.settings.items() if k not in ("run", "runs")}
    return (step.kind, digest(settings), meter.key(config), config.eval_subset)


def step_wall_seconds(record: dict[str, Any]) -> float:
    """A finished step's wall seconds from its ``timing.json``: the last invocation's, plus
    those an evaluation ran before a stop (``seconds_before_resume``)."""
    return float(record.get("seconds") or 0.0) + float(record.get("seconds_before_resume") or 0.0)


def finished_times(steps: list[Step], runs: dict[str, Step], meter: RateMeter, out: Path) -> dict[tuple[Any, ...], float]:
    """Wall seconds of the finished steps in ``out`` (their ``timing.json``) on this meter's
    device, by ``signature``: a step like a finished one is estimated at its time. Where none
    of a signature has finished, a stopped evaluation ``EXTRAPOLATED_SHARE`` along stands in,
    at the pace it kept (its seconds over its share): the three noisy ZOO steps of Table 5 cost
    alike, and the training-rate model misses a forward-only attack's cost by several times."""
    times: dict[tuple[Any, ...], float] = {}
    paced: dict[tuple[Any, ...], float] = {}
    for step in steps:
        key = signature(step, runs, meter)
        if key is None:
            continue
        record = read_timing(out / step.key / TIMING)  # checked: seconds finite, >= 0
        if isinstance(record, dict) and record.get("device", "cpu") == meter.device:
            times.setdefault(key, step_wall_seconds(record))
        elif step.kind == "eval":
            progress = eval_progress(out, step)
            if progress is not None and progress[0] >= EXTRAPOLATED_SHARE and progress[1] > 0:
                paced.setdefault(key, progress[1] / progress[0])
    return paced | times


EXTRAPOLATED_SHARE = 0.1   # a stopped eval step this far along stands in for steps like it


def step_seconds(step: Step, runs: dict[str, Step], meter: RateMeter, out: Any,
                 times: dict[tuple[Any, ...], float] | None = None) -> float:
    """Estimated seconds of ``step`` still to run (a partial training run: its last epochs; a
    stopped evaluation: the share of its work its partial file does not hold, at the pace it
    kept so far once it is ``MEASURED_SHARE`` along): the time a finished step of the same
    signature took here (or a stopped one's pace, ``finished_times``), else modelled from images/s."""
    progress = eval_progress(out, step) if step.kind == "eval" else None
    if progress is not None and progress[0] >= MEASURED_SHARE and progress[1] > 0:
        share, spent = progress   # its own pace so far (this machine, as it is shared)
        return spent * (1.0 - share) / share
    return _whole_step_seconds(step, runs, meter, out, times) * (1.0 - (progress[0] if progress else 0.0))


def _whole_step_seconds(step: Step, runs: dict[str, Step], meter: RateMeter, out: Any,
                        times: dict[tuple[Any, ...], float] | None = None) -> float:
    key = signature(step, runs, meter)
    if times and key in times:
        return times[key]
    if step.kind == "train":
        cfg = step.config
        assert cfg is not None
        n_train = cfg.train_subset or SPLIT_SIZES.get(cfg.dataset, (50000, 10000))[0]
        epochs_left = cfg.epochs - max((int(r.get("epoch", 0)) for r in train_log(out / step.key)), default=0)
        per_epoch_eval = cfg.eval_subset * ((cfg.eval_steps or cfg.steps) + 1) / (cfg.steps + 2)
        return max(epochs_left, 0) * (n_train + per_epoch_eval) / meter.rate(cfg)
    cfg = runs[step.needs[0]].config
    assert cfg is not None
    pass_rate = meter.rate(cfg) * ((cfg.steps + 2) if cfg.adversarial else 1)
    steps = 40 if SHAPES.get(cfg.dataset) == (1, 28, 28) else 7
    s = step.settings
    n = s.get("n") or SPLIT_SIZES.get(cfg.dataset, (50000, 10000))[1]
    if step.kind == "eval":
        randomized = bool(cfg.location) or bool(cfg.input_noise)
        passes = evaluation_passes(s, steps, randomized, cascade_reach(out, step, s))
    elif step.kind == "transfer":
        passes = 4 * s["trials"] * (steps + 1)
    elif step.kind == "substitute":  # substitute training (about 3 passes per image-epoch) + attacks
        trained = s["seed_n"] * (2 ** s["rounds"] - 1) * (3 * s["epochs_per_round"] + 1)
        passes = sum(2 if a == "fgsm" else (s.get("steps") or steps) + 1 for a in s["attacks"]) + 1
        return (n * passes + trained) / pass_rate
    elif step.kind == "audit":
        from ..auditing import AuditSettings

        a = AuditSettings(eps=cfg.eps, **{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()
                                           if k not in ("run", "items", "n") and v is not None})
        return audit_seconds(a, n, pass_rate)
    elif step.kind == "certify":  # forward passes (1/3 of a pass) on noisy copies, then the attacks
        check = s.get("check") or {}
        cw = check.get("cw_options") or {}
        attacked = check.get("images", 0) * check.get("samples", 16) * (
            cw.get("steps", 1000) * cw.get("binary_search_steps", 9) + check.get("pgd_steps", 100) * check.get("pgd_eot", 4))
        judged = check.get("images", 0) * 2 * check.get("predict_n", 1000) / 3
        return (s.get("subset", 100) * (s["n0"] + s["n"]) / 3 + attacked + judged) / pass_rate
    else:
        return 1.0
    return n * passes / pass_rate


MEASURED_SHARE = 0.005   # a stopped eval step this far along is estimated from its own pace


def eval_progress(out: Any, step: Step) -> tuple[float, float] | None:
    """(share of its work, wall seconds spent) an eval step's partial file (a stopped run's)
    records; None when it has none."""
    from ..evaluation.resume import partial_progress
    from ..runs import PARTIAL_EVALUATION

    return None if out is None else partial_progress(Path(out) / step.key / PARTIAL_EVALUATION)


EARLY_STOPPING = ("zoo", "eot-zoo")   # attacks that stop at once on an image already misclassified


def cascade_reach(out: Any, step: Step, settings: dict[str, Any]) -> dict[str, float] | None:
    """The share of images each attack of an eval step will really work on, from an
    evaluation of the same run already in ``out`` (its paper protocol's accuracies): a
    cascaded attack, clean for the first after clean and PGD for the later ones; ZOO and
    EOT-ZOO (``EARLY_STOPPING``), clean. None when there is no such evaluation or attack."""
    attacks = settings.get("attacks", ())
    chain = [a for a in attacks if a in (settings.get("cascade") or ()) and a != "clean"]
    stopping = [a for a in attacks if a in EARLY_STOPPING and a not in chain]
    if not (chain or stopping) or out is None:
        return None
    for folder in sorted(Path(out, step.needs[0]).glob("eval-paper-*")):
        accuracy = (read_output(folder, RESULTS) or {}).get("accuracy_percent") or {}
        measured = accuracy.get("with_noise") or accuracy.get("without_noise") or {}
        clean, pgd = (measured.get(a, {}).get("mean") for a in ("clean", "pgd"))
        if isinstance(clean, (int, float)) and isinstance(pgd, (int, float)):
            return ({a: (clean if i == 0 else pgd) / 100 for i, a in enumerate(chain)}
                    | {a: clean / 100 for a in stopping})
    return None


def format_seconds(seconds: float) -> str:
    return format_duration(seconds)


def spent_seconds(steps: list[Step], out: Path) -> tuple[float, int]:
    """(wall seconds the done steps in ``out`` took, how many of them recorded a timing):
    a training run counts the epoch seconds its log records, the rest their ``timing.json``."""
    from .runner import state

    total, timed = 0.0, 0
    for step in steps:
        if state(step, out)[0] != "done":
            continue
        folder = out / step.key
        if step.kind == "train":
            seconds = sum(max(float(r["train_seconds"]), 0.0) for r in train_log(folder)
                          if _finite(r.get("train_seconds")))
        else:
            record = read_timing(folder / TIMING)
            if record is None:
                continue
            seconds = step_wall_seconds(record)
        total += seconds
        timed += seconds > 0
    return total, timed


def cpu_spent(steps: list[Step], out: Path) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, how many steps) of the done steps whose ``timing.json``
    records CPU time: what the work cost, apart from other processes sharing the cores."""
    from .runner import state

    cpu = wall = 0.0
    count = 0
    for step in steps:
        if state(step, out)[0] != "done":
            continue
        record = read_timing(out / step.key / TIMING)
        if record is None or record.get("cpu_seconds") is None:
            continue
        step_cpu, step_wall = float(record["cpu_seconds"]), float(record["seconds"])
        cpu, wall, count = cpu + step_cpu, wall + step_wall, count + 1
    return cpu, wall, count


def cuda_epoch_seconds(folder: Path, last: int = 5) -> float | None:
    """The median GPU seconds per epoch of the last ``last`` epochs a run in ``folder`` logged
    on CUDA: an epoch's wall seconds over the runs that shared them (its ``concurrent``); None
    with no log, or one trained elsewhere. Training steps only: the per-epoch probe evaluation
    is not counted."""
    recorded = read_config(folder)
    if not isinstance(recorded, dict) or not str(recorded.get("device") or "").startswith("cuda"):
        return None
    seconds = [float(r["train_seconds"]) / _shared_by(r) for r in train_log(folder)
               if _finite(r.get("train_seconds")) and r["train_seconds"] > 0]
    return statistics.median(seconds[-last:]) if seconds else None


def _shared_by(record: dict[str, Any]) -> int:
    """How many runs trained at once during a logged epoch (``concurrent``; 1 when absent)."""
    value = record.get("concurrent", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def gpu_minutes_left(steps: list[Step], out: Path) -> list[tuple[Step, int, float | None, str]]:
    """For each training step of ``steps``: (step, epochs left, seconds per epoch at the last
    rate measured on CUDA, where that rate comes from). A run's own log gives its rate; a run
    without one takes the median rate of the runs in ``out`` logged on CUDA with the same
    model, width and PGD steps ("like"); None when there is no such run."""
    from .runner import checkpoint_epochs

    def kind(config: TrainConfig) -> tuple[Any, ...]:
        return config.model, config.width, config.steps if config.adversarial else 0

    rates: dict[tuple[Any, ...], list[float]] = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
        seconds = cuda_epoch_seconds(folder)
        if seconds is not None:
            try:
                config = TrainConfig.from_dict(read_config(folder) or {})
            except Exception:  # a damaged config.json: its rate is not used
                continue
            rates.setdefault(kind(config), []).append(seconds)
    rows = []
    for step in steps:
        if step.kind != "train" or step.config is None:
            continue
        left = max(0, step.config.epochs - checkpoint_epochs(checkpoint_path(out / step.key)))
        own = cuda_epoch_seconds(out / step.key)
        if own is not None:
            rows.append((step, left, own, "own log"))
        elif kind(step.config) in rates:
            rows.append((step, left, statistics.median(rates[kind(step.config)]), "like"))
        else:
            rows.append((step, left, None, "no CUDA rate"))
    return rows
