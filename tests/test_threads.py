"""The ``pni`` command's thread policy (issue 24, item 1): a passive OpenMP wait policy set
before torch starts, ``--threads`` / ``$PNI_THREADS``, and the automatic choice (the free
cores). Its speed is measured in ``benchmarks/threads.py``, not here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pni.threads import (ThreadsError, auto_threads, choose_threads, cli_wait_policy, is_pni_command,
                         parse_threads)

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_pni_command_is_recognised_from_its_command_line() -> None:
    assert is_pni_command(["python", "-m", "pni", "train"])
    assert is_pni_command(["/usr/bin/python3", "-u", "-m", "pni.cli", "eval"])
    assert is_pni_command(["/venv/bin/python", "/venv/bin/pni", "info"])
    assert not is_pni_command(["python", "-m", "pytest", "-q"])
    assert not is_pni_command(["python", "train.py", "pni"])


def test_wait_policy_is_set_only_for_the_command_and_never_over_the_users() -> None:
    env: dict[str, str] = {}
    # torch is imported in this test process already: too late, nothing is set
    assert not cli_wait_policy(env, ["python", "-m", "pni", "info"]) and env == {}


def test_the_command_runs_with_a_passive_wait_policy_and_the_threads_asked_for() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "PNI_THREADS")}
    env["PYTHONPATH"] = str(SRC)
    code = ("import sys, os; sys.argv = ['pni', 'info']; import pni, torch; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    # a script that imports pni is not the pni command: the environment is left alone
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
    run = subprocess.run([sys.executable, "-m", "pni", "info", "--threads", "1"], env=env,
                         capture_output=True, text=True, check=True)
    assert "threads:       1 of" in run.stdout and "wait policy PASSIVE" in run.stdout
    env["OMP_WAIT_POLICY"] = "ACTIVE"                          # the user's own setting wins
    run = subprocess.run([sys.executable, "-m", "pni", "--threads", "2", "info"], env={**env, "PNI_THREADS": "1"},
                         capture_output=True, text=True, check=True)
    assert "threads:       2 of" in run.stdout and "wait policy ACTIVE" in run.stdout   # the flag beats the env
    bad = subprocess.run([sys.executable, "-m", "pni", "info"], env={**env, "PNI_THREADS": "many"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'many'" in bad.stderr


def test_thread_choice() -> None:
    assert parse_threads(None) is None and parse_threads("auto") is None and parse_threads("0") is None
    assert parse_threads("3") == 3 and parse_threads(2) == 2
    for bad in ("x", "-1", "1.5"):
        with pytest.raises(ThreadsError):
            parse_threads(bad)
    assert auto_threads(cores=2, default=2) == 2 and auto_threads(cores=1, default=2) == 1
    assert auto_threads(cores=8, default=4) == 4 and auto_threads(cores=8, default=0) == 1
    assert choose_threads("4", {"PNI_THREADS": "2"}) == (4, "--threads")
    assert choose_threads(None, {"PNI_THREADS": "2"}) == (2, "$PNI_THREADS")
    assert choose_threads("auto", {"PNI_THREADS": "auto"})[1] == "auto"
