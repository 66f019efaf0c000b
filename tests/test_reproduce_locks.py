"""Several pni reproduce processes on one results folder: a step another process holds is
deferred (its dependents wait), nothing runs twice, a dead holder leaves no stale lock."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from pni.cli import app as cli
from pni.reproduce import Runner, get_plans, resolve, state
from pni.folder_lock import LOCK_FILE, FolderLock as StepLock, held_elsewhere

HOLD = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(600)")


def _hold(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s step lock until it is killed."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / LOCK_FILE)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_is_exclusive_between_processes_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = _hold(tmp_path / "step")
    try:
        assert held_elsewhere(tmp_path / "step") and not StepLock(tmp_path / "step").acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = StepLock(tmp_path / "step")
    assert not held_elsewhere(tmp_path / "step") and lock.acquire()
    assert lock.holder() == str(os.getpid())
    lock.release()


def test_a_step_held_elsewhere_is_deferred_and_its_dependents_wait(tmp_path: Path, capsys) -> None:
    """The vanilla row's training is held by another process: the dry run and the runner say so, its
    evaluations wait for it, and once the holder is gone (killed: a stopped run) the runner
    trains the run itself and finishes the row."""
    steps = [s for s in resolve(get_plans("table2"), "smoke", "vanilla") if "table2:vanilla" in s.rows]
    train = steps[0]      # seed 0 (the row's other seeds have their own runs)
    assert train.kind == "train" and all(train.key in s.needs for s in steps[1:])
    holder = _hold(tmp_path / train.key)
    assert cli.main(["reproduce", "table2", "--scale", "smoke", "--only", "vanilla", "--out", str(tmp_path),
                     "--dry-run"]) == 0
    assert f"[todo, running in another process] train {train.key}" in capsys.readouterr().out
    lines: list[str] = []
    threading.Timer(1.0, holder.kill).start()
    try:
        outcome = Runner(tmp_path, echo=lines.append, poll_seconds=0.05).run(steps)
    finally:
        holder.kill()
        holder.wait()
    text = "\n".join(lines)
    assert "running in another process" in text and f"waits for {train.key}" in text
    assert all(outcome[s.key] == "ran" for s in steps) and all(state(s, tmp_path)[0] == "done" for s in steps)


def test_two_processes_share_a_plan_and_run_every_step_once(tmp_path: Path) -> None:
    """Two `pni reproduce` processes on one folder: every step finishes, in exactly one of them."""
    command = [sys.executable, "-m", "pni", "reproduce", "table2", "--scale", "smoke", "--only", "pni-w",
               "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    steps = resolve(get_plans("table2"), "smoke", "pni-w")
    for step in steps:
        finished = [out.count(f"{step.key}: finished") for out in outputs]
        assert sorted(finished) == [0, 1], (step.key, outputs)
        assert state(step, tmp_path)[0] == "done"
