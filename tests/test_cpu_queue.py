"""scripts/cpu_queue.sh and scripts/cpu_continue.sh: a queue's finished lines are skipped when it
is started again, a failing line does not stop the others, a dry run writes nothing, and a
second run on one checkout is refused while the first works."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")


@pytest.fixture
def checkout(tmp_path):
    """A checkout holding only the two scripts, and a stand-in interpreter that records its calls."""
    (tmp_path / "scripts").mkdir()
    for name in ("cpu_queue.sh", "cpu_continue.sh"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\ncat > /dev/null\necho "$*" >> "$(dirname "$0")/calls"\n')
    fake.chmod(0o755)
    return tmp_path


def _run(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(checkout / "fakepy")}
    return subprocess.run(["bash", *args], cwd=checkout, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)


def test_a_queue_skips_its_finished_lines_and_goes_on_past_a_failing_one(checkout):
    queue = checkout / "queue"
    queue.write_text("# a comment\necho one >> out\nfalse\necho three >> out\n")
    first = _run(checkout, "scripts/cpu_queue.sh", str(queue), "2")
    assert first.returncode == 0 and "line 3 failed" in first.stderr
    assert sorted((checkout / "out").read_text().split()) == ["one", "three"]
    assert sorted((checkout / "queue.done").read_text().split()) == ["2", "4"]
    again = _run(checkout, "scripts/cpu_queue.sh", str(queue), "2")
    assert sorted((checkout / "out").read_text().split()) == ["one", "three"]  # 2 and 4 not run again
    assert "line 3:" in again.stderr and "line 2:" not in again.stderr


def test_cpu_continue_dry_run_only_prints_and_a_second_run_is_refused(checkout):
    dry = _run(checkout, "scripts/cpu_continue.sh", "2", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("-m pni reproduce all --scale cpu") == 2
    assert not (checkout / "results" / ".queue").exists()
    holder = subprocess.Popen(["flock", str(checkout / "results" / ".queue.run"), "sleep", "30"], start_new_session=True)
    try:
        for _ in range(100):  # until the holder has the lock
            if subprocess.run(["flock", "-n", str(checkout / "results" / ".queue.run"), "true"]).returncode:
                break
            time.sleep(0.05)
        refused = _run(checkout, "scripts/cpu_continue.sh", "2")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the sleep holds the lock too
        holder.wait()
    assert refused.returncode == 1 and "another run of it is working on this checkout" in refused.stderr
    assert not (checkout / "results" / ".queue").exists()
    ran = _run(checkout, "scripts/cpu_continue.sh", "1")
    assert ran.returncode == 0
    assert (checkout / "calls").read_text().count("-m pni reproduce all --scale cpu --threads 1") == 1
