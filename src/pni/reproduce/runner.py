"""Runs the steps of a plan into ``out/<run key>/``: a finished step whose recorded settings
equal the plan's is reused untouched, an interrupted training run resumes from its
checkpoint (``pni.training.fit(resume=True)``), so ``pni reproduce`` can be stopped at any
moment and re-run to continue. Each step runs under its folder's lock (``pni.folder_lock``), so
several processes can work through one plan side by side. With ``concurrent`` K > 1 the
unfinished training runs are trained K at a time in this process
(``pni.training.concurrent.train_concurrently``: each run as it would be alone) before the
other steps; ``auto_concurrency`` picks K on CUDA from the free memory."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..folder_lock import FolderLock as StepLock, held_elsewhere
from ..provenance import with_code, without_code
from ..runs import (
    ALPHAS_FIGURE,
    CONFIG,
    OUTPUTS,
    PARTIAL_EVALUATION,
    STEP_RECORD,
    SUBSTITUTE,
    TIMING,
    TRAIN_LOG,
    checkpoint_path,
    read_config,
    read_step_record,
    read_train_log,
)
from .results_check import output_ok, remove_stale_temp_files
from .steps import ReproduceError, Step, config_key_values

Printer = Callable[[str], None]
RUN_MEMORY_GIB = 4.0  # GPU memory set aside per concurrent run (a ResNet-20 at batch 128, graphed; to measure)
MAX_CONCURRENT = 9    # Tables 1-2 at paper scale are 9 runs


def auto_concurrency(device: str) -> int:
    """K for ``--concurrent auto``: 1 off CUDA; on CUDA ``min(MAX_CONCURRENT, free GiB //
    RUN_MEMORY_GIB)``, at least 1 (the free memory as ``torch.cuda.mem_get_info`` reports it)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return 1
    index = torch.device(device).index
    free, _ = torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())
    return max(1, min(MAX_CONCURRENT, int(free / 2**30 // RUN_MEMORY_GIB)))


def _same_config(recorded: Any, step: Step) -> bool:
    if not isinstance(recorded, dict) or step.config is None:
        return False
    from ..config import ConfigError, TrainConfig

    try:
        return config_key_values(TrainConfig.from_dict(recorded)) == config_key_values(step.config)
    except ConfigError:
        return False


def checkpoint_epochs(path: Path) -> int:
    """Whole epochs a checkpoint holds (0 when there is none; a mid-epoch checkpoint of epoch
    ``e`` holds ``e`` whole epochs)."""
    if not path.exists():
        return 0
    from ..checkpoint import read_checkpoint

    return int(read_checkpoint(path)["epoch"])


def slim_checkpoint(folder: Path) -> bool:
    """A finished run keeps its weights, not its optimizer state (half of a ResNet's file),
    so results folders stay small enough to commit (``checkpoint.prev.pt``, the fallback,
    is left as it is: it is not committed). Returns whether the checkpoint was rewritten."""
    from ..checkpoint import atomic_save, read_checkpoint

    path = checkpoint_path(folder)
    checkpoint = read_checkpoint(path)
    if "optimizer" not in checkpoint:
        return False
    del checkpoint["optimizer"]
    atomic_save(checkpoint, path)
    return True


def state(step: Step, out: Path) -> tuple[str, str]:
    """``("done" | "partial" | "todo", detail)`` of a step in ``out``."""
    folder = out / step.key
    if step.kind == "train":
        assert step.config is not None
        if not (folder / CONFIG).exists():
            return "todo", ""
        if not _same_config(read_config(folder), step):
            raise ReproduceError(f"{folder} holds a run with other settings than the plan's "
                                 f"(config.json differs); move it away or choose another --out")
        epoch = checkpoint_epochs(checkpoint_path(folder))  # the log may be one epoch ahead
        if epoch >= step.config.epochs:
            return "done", f"{epoch} epochs"
        return ("partial", f"{epoch}/{step.config.epochs} epochs") if epoch else ("todo", "")
    # the code version recorded in step.json is not part of the settings compared
    if (folder / OUTPUTS[step.kind]).exists() and without_code(read_step_record(folder)) == _jsonable(step.settings):
        # a file that fails its check (results_check: one warning line) is not done: rerun it
        return ("done", "") if output_ok(folder, OUTPUTS[step.kind], step.settings) else ("todo", "invalid output")
    if step.kind == "eval" and (folder / PARTIAL_EVALUATION).exists():
        from ..evaluation.resume import partial_progress

        progress = partial_progress(folder / PARTIAL_EVALUATION)
        done = f" ({progress[0]:.0%} of its work)" if progress and progress[0] else ""
        return "partial", f"the attacks and batches it finished before a stop{done} are reused"
    return "todo", ""


def _seconds_before_stop(step: Step, folder: Path) -> float:
    """The wall seconds an eval step's partial file records (the evaluation's time before a
    stop; 0 with none): its ``timing.json`` then counts the whole step, not just the resume."""
    if step.kind != "eval":
        return 0.0
    from ..evaluation.resume import partial_progress

    progress = partial_progress(folder / PARTIAL_EVALUATION)
    return progress[1] if progress else 0.0


def _jsonable(values: Any) -> Any:
    return json.loads(json.dumps(values, default=str))


class Runner:
    """Executes steps in order, each in its folder under ``out``; ``device`` for every step."""

    def __init__(self, out: str | Path, device: str = "cpu", echo: Printer = print,
                 on_step_done: Callable[[Step], None] | None = None,
                 max_minutes: float | None = None, poll_seconds: float = 10.0, concurrent: int = 1) -> None:
        if concurrent < 1:
            raise ReproduceError(f"--concurrent must be at least 1, got {concurrent}")
        self.concurrent = concurrent  # training runs trained together in this process
        self.out = Path(out)
        self.poll_seconds = poll_seconds   # how often a process waiting for another looks again
        self.device = device
        self.echo = echo
        self.on_step_done = on_step_done
        self._data: dict[tuple[str, str, str | None], Any] = {}
        self._deadline = None if max_minutes is None else time.perf_counter() + 60 * max_minutes
        self.stopped_early = False   # max_minutes ran out before every step was done
        self._told: set[str] = set()  # steps whose "held by another process" line was printed
        self._started = (time.perf_counter(), time.process_time())  # the running step's start
        self._earlier = 0.0   # the running eval step's wall seconds before a stop (its partial file)

    def _minutes_left(self) -> float | None:
        return None if self._deadline is None else (self._deadline - time.perf_counter()) / 60

    def run(self, steps: list[Step]) -> dict[str, str]:
        """Runs every step not done; returns ``{key: "reused" | "ran"}``. A step another
        ``pni reproduce`` process is running (``pni.folder_lock``), or one that needs such a step,
        is deferred: the other steps go first, then this process waits for it."""
        outcome: dict[str, str] = {}
        if self.concurrent > 1:
            outcome.update(self._train_together(steps))
            if self.stopped_early:
                return outcome
        waiting = [(i, step) for i, step in enumerate(steps, 1) if step.key not in outcome]
        while waiting:
            deferred: list[tuple[int, Step]] = []
            for i, step in waiting:
                result = self._attempt(i, step, steps, {s.key for _, s in deferred})
                if result == "stop":
                    return outcome
                if result == "deferred":
                    deferred.append((i, step))
                else:
                    outcome[step.key] = result
            if deferred and len(deferred) == len(waiting):  # all held elsewhere: wait for them
                left = self._minutes_left()
                if left is not None and left < 0.5:
                    self.echo("--max-minutes used up while waiting for another process; run again to continue")
                    self.stopped_early = True
                    return outcome
                time.sleep(self.poll_seconds)
            waiting = deferred
        return outcome

    def _train_together(self, steps: list[Step]) -> dict[str, str]:
        """Trains the plan's unfinished training runs ``concurrent`` at a time (in plan order,
        each under its folder's lock; one held by another process is left to the step loop),
        until fewer than two are left; returns ``{key: "ran"}`` for each run finished here."""
        outcome: dict[str, str] = {}
        tried: set[str] = set()
        while True:
            left = self._minutes_left()
            if left is not None and left < 0.5:
                self.stopped_early = True
                self.echo("--max-minutes used up; run again to continue")
                return outcome
            group: list[tuple[int, Step, StepLock]] = []
            for i, step in enumerate(steps, 1):
                if len(group) == self.concurrent:
                    break
                if step.kind != "train" or step.key in tried or state(step, self.out)[0] == "done":
                    continue
                lock = StepLock(self.out / step.key)
                if not lock.acquire():
                    continue
                if state(step, self.out)[0] == "done":  # another process just finished it
                    lock.release()
                    continue
                group.append((i, step, lock))
            if len(group) < 2:
                for _, _, lock in group:
                    lock.release()
                return outcome
            tried.update(step.key for _, step, _ in group)
            try:
                outcome.update(self._train_group(steps, group))
            finally:
                for _, _, lock in group:
                    lock.release()
            if self.stopped_early:
                return outcome

    def _train_group(self, steps: list[Step], group: list[tuple[int, Step, StepLock]]) -> dict[str, str]:
        import dataclasses

        from ..training.concurrent import train_concurrently

        configs, folders, resumes, overwrites = [], [], [], []
        for i, step, _ in group:
            assert step.config is not None
            status, detail = state(step, self.out)
            self.echo(f"[{i}/{len(steps)}] train {step.key}: "
                      f"{'resuming, ' + detail if status == 'partial' else 'running'} together with "
                      f"{len(group) - 1} other run(s) ({step.summary})")
            folder = self.out / step.key
            remove_stale_temp_files(folder)
            resume = (checkpoint_path(folder)).exists()
            configs.append(dataclasses.replace(step.config, device=self.device))
            folders.append(folder)
            resumes.append(resume)
            overwrites.append(not resume and (folder / TRAIN_LOG).exists())
        started, cpu_started = self._started = time.perf_counter(), time.process_time()
        train_concurrently(configs, folders, resume=resumes, overwrite=overwrites,
                           max_minutes=self._minutes_left(), load=self._dataset)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        outcome: dict[str, str] = {}
        for i, step, _ in group:
            head = f"[{i}/{len(steps)}] train {step.key}"
            if state(step, self.out)[0] != "done":
                self.echo(f"{head}: stopped after {seconds:.1f} s, --max-minutes used up; run again to continue")
                self.stopped_early = True
                continue
            slim_checkpoint(self.out / step.key)
            self.echo(f"{head}: finished in {seconds:.1f} s (with {len(group) - 1} other run(s))")
            self._timing(step, seconds, cpu_seconds, concurrent=len(group))
            outcome[step.key] = "ran"
            if self.on_step_done is not None:
                self.on_step_done(step)
        return outcome

    def _tell_once(self, key: str, line: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.echo(line)

    def _attempt(self, i: int, step: Step, steps: list[Step], deferred: set[str]) -> str:
        """Runs one step unless it is done or held elsewhere: ``"reused"``, ``"ran"``,
        ``"deferred"``, or ``"stop"`` (``--max-minutes`` used up)."""
        status, detail = state(step, self.out)
        head = f"[{i}/{len(steps)}] {step.kind} {step.key}"
        if status == "done" and not held_elsewhere(self.out / step.key):
            if step.kind == "train" and (lock := StepLock(self.out / step.key)).acquire(record=False):
                remove_stale_temp_files(self.out / step.key)  # of a killed slimming
                slim_checkpoint(self.out / step.key)
                if not (self.out / step.key / TIMING).exists():  # killed after its last epoch
                    self._timing(step, sum(float(r.get("train_seconds") or 0) for r in read_train_log(self.out / step.key)))
                lock.release()
            self.echo(f"{head}: done, reused")
            return "reused"
        left = self._minutes_left()
        if left is not None and left < 0.5:
            self.echo(f"{head}: not started, --max-minutes used up; run again to continue")
            self.stopped_early = True
            return "stop"
        missing = [k for k in step.needs if state(_train_of(steps, k), self.out)[0] != "done"]
        busy = [k for k in missing if k in deferred or held_elsewhere(self.out / k)]
        if missing and len(busy) == len(missing):
            self._tell_once(step.key, f"{head}: waits for {', '.join(busy)} (running in another process)")
            return "deferred"
        if missing:
            raise ReproduceError(f"{step.key} needs the unfinished run(s) {', '.join(missing)}")
        lock = StepLock(self.out / step.key)
        if not lock.acquire():
            self._tell_once(step.key, f"{head}: running in another process (pid {lock.holder()}); "
                                      f"going on with the next step")
            return "deferred"
        try:
            status, detail = state(step, self.out)  # the other process may have just finished it
            if status == "done":
                self.echo(f"{head}: done, reused")
                return "reused"
            self.echo(f"{head}: {'resuming, ' + detail if status == 'partial' else 'running'} ({step.summary})")
            remove_stale_temp_files(self.out / step.key)  # a killed write's; we hold the folder
            self._earlier = _seconds_before_stop(step, self.out / step.key)
            started, cpu_started = self._started = time.perf_counter(), time.process_time()
            self._work(step.kind)(step, self.out / step.key)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
            if step.kind == "train" and state(step, self.out)[0] != "done":
                self.echo(f"{head}: stopped after {seconds:.1f} s, --max-minutes used up; run again to continue")
                self.stopped_early = True
                return "stop"
            self.echo(f"{head}: finished in {seconds:.1f} s")
            if step.kind == "train":  # the other kinds wrote theirs before step.json (_record)
                self._timing(step, seconds, cpu_seconds)
        finally:
            lock.release()
        if self.on_step_done is not None:
            self.on_step_done(step)
        return "ran"

    # --- data ------------------------------------------------------------------------
    def _work(self, kind: str) -> Callable[[Step, Path], None]:
        """What runs a step of ``kind`` into its folder: one method per kind, in one table."""
        table: dict[str, Callable[[Step, Path], None]] = {
            "train": self._train, "eval": self._eval, "transfer": self._transfer, "audit": self._audit,
            "certify": self._certify, "substitute": self._substitute, "alphas": self._alphas}
        if kind not in table:
            raise ReproduceError(f"a step of unknown kind {kind!r}; expected one of: {', '.join(table)}")
        return table[kind]

    def _dataset(self, name: str, split: str, data_dir: str | None, download: bool = False) -> Any:
        from ..data import load_dataset

        key = (name, split, data_dir)
        if key not in self._data:
            self._data[key] = load_dataset(name, split, data_dir, download)
        return self._data[key]

    # --- step kinds ------------------------------------------------------------------
    def _train(self, step: Step, folder: Path) -> None:
        import dataclasses

        from ..training.run import train_run

        assert step.config is not None
        config = dataclasses.replace(step.config, device=self.device) \
            if step.config.device != self.device else step.config
        # resume only from a checkpoint; a log without one (stopped before its first epoch
        # ended) holds nothing to keep, so that folder starts afresh
        resume = (checkpoint_path(folder)).exists()
        train_run(config, folder, resume=resume, overwrite=not resume and (folder / TRAIN_LOG).exists(),
                  max_minutes=self._minutes_left(), load=self._dataset)
        if checkpoint_epochs(checkpoint_path(folder)) >= config.epochs:
            slim_checkpoint(folder)

    def _checkpoint(self, key: str) -> str:
        return str(checkpoint_path(self.out / key))

    def _eval(self, step: Step, folder: Path) -> None:
        from ..evaluation.evaluator import evaluate_checkpoint
        from ..reports.evaluation import write_evaluation

        kwargs = {k: v for k, v in step.settings.items() if k not in ("run", "protocol")}
        partial = folder / PARTIAL_EVALUATION  # each finished attack: a stopped step resumes from it
        evaluation, label = evaluate_checkpoint(self._checkpoint(step.needs[0]), device=self.device,
                                                resume_file=str(partial), progress=True, announce=False,
                                                **kwargs)  # progress lines with the time left
        write_evaluation(evaluation, folder, label)
        self._record(step, folder)
        partial.unlink(missing_ok=True)

    def _transfer(self, step: Step, folder: Path) -> None:
        from ..attacks.transfer import transfer_checkpoints
        from ..reports.evaluation import write_transfer

        s = step.settings
        matrix = transfer_checkpoints([self._checkpoint(k) for k in step.needs], attack=s["attack"],
                                      trials=s["trials"], n=s["n"], device=self.device, votes=s.get("votes", 1))
        write_transfer(matrix, folder)
        self._record(step, folder)

    def _audit(self, step: Step, folder: Path) -> None:
        from ..auditing import audit_checkpoint
        from ..reports.audit import write_audit

        overrides = {k: v for k, v in step.settings.items() if k not in ("run", "n", "items")}
        if step.settings.get("items"):
            overrides["items"] = tuple(step.settings["items"])
        report = audit_checkpoint(self._checkpoint(step.needs[0]), n=step.settings["n"],
                                  device=self.device, **overrides)
        write_audit(report, folder)
        self._record(step, folder)

    def _certify(self, step: Step, folder: Path) -> None:
        """Table 6: ``certify.json``; with ``check`` settings also ``check.json``, the certificates
        cross-checked against L2 attacks (``pni.certification.check``)."""
        from ..certification.check import certify_and_check
        from ..reports.certify import write_certificate_check, write_certification

        kwargs = {k: v for k, v in step.settings.items() if k not in ("run", "check")}
        check = dict(step.settings.get("check") or {})
        images = check.pop("images", 0)
        certification, result, label = certify_and_check(
            self._checkpoint(step.needs[0]), device=self.device, check_images=images, check_options=check, **kwargs)
        write_certification(certification, folder, label)
        if result is not None:
            write_certificate_check(result, folder, label)
        self._record(step, folder)

    def _substitute(self, step: Step, folder: Path) -> None:
        """Table 5: Papernot et al.'s substitute attack on a run, into ``substitute.json``."""
        import torch

        from ..attacks.substitute import substitute_attack, train_substitute
        from ..models import load_model
        from ..files import write_json
        from ..attacks.budget import paper_pgd_steps

        s = step.settings
        target, ckpt = load_model(self._checkpoint(step.needs[0]), device=self.device)
        config = ckpt.get("config", {})
        data = self._dataset(config.get("dataset", "cifar10"), "test", config.get("data_dir"))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        wanted = s["seed_n"] + (s["n"] if s["n"] is not None else len(data))
        x, y = data.subset(order[:min(wanted, len(data))]).tensors()
        x, y = x.to(self.device), y.to(self.device)
        seeds, held, held_y = x[:s["seed_n"]], x[s["seed_n"]:], y[s["seed_n"]:]
        substitute, record = train_substitute(target, seeds, rounds=s["rounds"], lambda_=s["lambda"],
                                              epochs_per_round=s["epochs_per_round"], holdout=held, seed=0)
        eps = config.get("eps") or 8 / 255
        steps = s.get("steps") or paper_pgd_steps(tuple(x.shape[1:]))
        results = {a: substitute_attack(target, substitute, held, held_y, eps, a, votes=s["votes"], seed=0,
                                        steps=steps if a == "pgd" else None,
                                        step_size=config.get("step_size") if a == "pgd" else None).to_json()
                   for a in s["attacks"]}
        for result in results.values():
            result.pop("substitute", None)
        write_json(with_code({"run": step.needs[0], "n": len(held_y), "eps": eps, "substitute": record.to_json(),
                              "attacks": results}), folder / SUBSTITUTE)
        self._record(step, folder)

    def _alphas(self, step: Step, folder: Path) -> None:
        from ..models import load_model
        from ..models import layer_labels
        from ..reports.figures import plot_alphas
        from ..files import write_json

        run = self.out / step.needs[0]
        history = read_train_log(run)
        model, _ = load_model(checkpoint_path(run))
        labels = layer_labels(model)
        write_json({"labels": labels, "alphas": [{"epoch": r.get("epoch"), **r.get("alphas", {})}
                                                 for r in history]}, folder / "alphas.json")
        plot_alphas(history, folder / ALPHAS_FIGURE, labels=labels, title=f"alpha per layer: {step.needs[0]}")
        self._record(step, folder)

    def _timing(self, step: Step, seconds: float, cpu_seconds: float | None = None, concurrent: int = 1) -> None:
        """``timing.json``: this invocation's wall seconds (a resumed run: since the resume), its
        CPU seconds (user + system, all threads: unlike the wall time, not stretched by other
        processes sharing the cores), an eval step resumed from its partial file the wall seconds
        it ran before (``seconds_before_resume``) and, for a training run, the epoch seconds its
        log records, and how many runs trained together (``concurrent``: their wall and CPU
        seconds are shared); read by ``--dry-run``."""
        from datetime import datetime, timezone

        from ..files import write_json

        record: dict[str, Any] = {"seconds": round(seconds, 3), "device": self.device,
                                  "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 3),
                                  "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if concurrent > 1:
            record["concurrent"] = concurrent
        if step.kind == "eval" and self._earlier > 0:
            record["seconds_before_resume"] = round(self._earlier, 3)
        if step.kind == "train":
            record["train_seconds_logged"] = round(sum(float(r.get("train_seconds") or 0)
                                                       for r in read_train_log(self.out / step.key)), 3)
        write_json(record, self.out / step.key / TIMING, what="step timing")

    def _record(self, step: Step, folder: Path) -> None:
        """``timing.json``, then ``step.json``, written last (atomically): its presence with equal
        settings marks the step done, so a done step always has its timing."""
        from ..files import write_json

        self._timing(step, time.perf_counter() - self._started[0], time.process_time() - self._started[1])
        write_json(with_code(_jsonable(step.settings)), folder / STEP_RECORD, what="step record")


def _train_of(steps: list[Step], key: str) -> Step:
    for step in steps:
        if step.key == key:
            return step
    raise ReproduceError(f"no train step {key} in the plan")
