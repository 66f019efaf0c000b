"""Which code made a result: pni's version and, in a git checkout, the commit (and whether
the working tree differed from it). Recorded in every result file (``config.json``,
``results.json``, ``audit.json``, ``certify.json``, ``transfer.json``, ``substitute.json``,
``step.json``) under ``"code"``; never part of a run's or a step's key, so finished steps
stay reused when the code moves on."""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

__version__ = "0.1.0"
CODE_FIELD = "code"


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"pni": version, "commit": sha or None, "dirty": bool or None}``: the commit of the git
    checkout pni is imported from (None outside one, e.g. an installed wheel), and whether
    tracked files under its source folder differ from that commit."""
    source = Path(__file__).resolve().parent
    record: dict[str, Any] = {"pni": __version__, "commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return record
        record["commit"] = commit.stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=source,
                                capture_output=True, text=True, timeout=10)
        record["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return record


def with_code(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the code that made them under ``"code"`` (a copy)."""
    return {**values, CODE_FIELD: code_version()}


def without_code(values: Any) -> Any:
    """A recorded dict without its ``"code"`` entry (what a comparison of settings looks at)."""
    if isinstance(values, dict):
        return {k: v for k, v in values.items() if k != CODE_FIELD}
    return values
