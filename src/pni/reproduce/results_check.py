"""What ``pni reproduce`` reads back from a results folder is checked on read, so nothing
wrong gets into a report, a dry run or a "done, reused": a step's JSON (``results.json``,
``transfer.json``, ``audit.json``, ``certify.json``, ``substitute.json``, ``alphas.json``)
against a schema (types; accuracies in [0, 100] or fractions in [0, 1]; counts >= 1; per
trial lists as long as ``trials``; each mean equal to the mean of its trials; per-image
outcomes that decode and agree with the stored accuracies; ``n`` equal to the subset's size),
``timing.json`` (seconds finite, >= 0), and Table 1's alphas against the checkpoint.

A file that fails counts as not done (``runner.state``: the step is rerun) and is named in
one warning line with the field and what was expected. Unknown extra keys (a newer writer's
``code`` record, for one) are ignored. Also here: the stale temporary files a killed atomic
write leaves in a step's folder, removed when the step is next run.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PNIError
from ..runs import AUDIT, CERTIFY, RESULTS, TRANSFER, checkpoint_path


class ResultsFileError(PNIError):
    """A results file that fails its schema; the message names the file and the field."""


# --- the leaves --------------------------------------------------------------------------------

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _within(low: float, high: float, nan: bool = False) -> Callable[[Any], bool]:
    return lambda v: (_number(v) and low <= v <= high) or (nan and isinstance(v, float) and math.isnan(v))


def _at_least_zero(nan: bool = False, none: bool = False) -> Callable[[Any], bool]:
    return lambda v: ((_number(v) and v >= 0) or (nan and isinstance(v, float) and math.isnan(v))
                      or (none and v is None))


PERCENT = (_within(0, 100), "a number in [0, 100]")
FRACTION = (_within(0, 1), "a fraction in [0, 1]")
# key -> (test of every number below it, what was expected); a key not listed is walked into
LEAF_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "accuracy_per_trial": FRACTION, "majority_vote_accuracy_per_trial": FRACTION,
    "clean_accuracy": FRACTION, "agreement": FRACTION, "agreement_per_round": FRACTION,
    "success_rate": (_within(0, 100, nan=True), "a number in [0, 100] (or NaN: nothing attacked)"),
    "mean_l2": (_at_least_zero(nan=True), "a number >= 0 (or NaN)"),
    "mean_l2_stderr": (_at_least_zero(nan=True), "a number >= 0 (or NaN)"),
    "seconds": (_at_least_zero(), "a number of seconds >= 0"),
    "seconds_per_image": (_at_least_zero(), "a number of seconds >= 0"),
    "seconds_before_resume": (_at_least_zero(), "a number of seconds >= 0"),
    "cpu_seconds": (_at_least_zero(none=True), "a number of seconds >= 0 (or null)"),
    "train_seconds_logged": (_at_least_zero(), "a number of seconds >= 0"),
    "accuracy": PERCENT,   # a fraction in the audit's sweeps (checked there), a percentage elsewhere
}
# counts: an integer >= 1 (null where a setting means "all")
COUNTS = ("n", "trials", "votes", "images", "n0", "of", "queries", "holdout_size", "holdout_queries")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(path: Path, field: str, expected: str, value: Any = ..., note: str = "") -> ResultsFileError:
    got = "" if value is ... else f", got {_shown(value)}"
    return ResultsFileError(f"{path}: field {field!r}: expected {expected}{got}{note}")


def _leaves(value: Any, test: Callable[[Any], bool], expected: str, path: Path, field: str) -> None:
    """Every leaf below ``value`` (through dicts and lists) passes ``test``; a "std" may be NaN."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "std" and isinstance(item, float) and math.isnan(item):
                continue
            _leaves(item, test, expected, path, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _leaves(item, test, expected, path, f"{field}[{i}]")
    elif not test(value):
        raise _fail(path, field, expected, value)


def _walk(value: Any, path: Path, field: str = "") -> None:
    """The generic rules: percentages, fractions, seconds and counts wherever they appear."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, path, f"{field}[{i}]")
        return
    if not isinstance(value, Mapping):
        return
    for key, item in value.items():
        name = f"{field}.{key}" if field else str(key)
        if not isinstance(key, str):
            continue
        if key in LEAF_RULES:
            _leaves(item, *LEAF_RULES[key], path, name)
        elif key.endswith("_percent"):
            _leaves(item, *PERCENT, path, name)
        elif key in COUNTS:
            if not (_count(item) or (item is None and field)):
                raise _fail(path, name, "an integer >= 1", item)
        elif key == "seeds":
            if not (isinstance(item, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in item)):
                raise _fail(path, name, "a list of integer seeds", item)
        else:
            _walk(item, path, name)


# --- evaluations: trials, means, per-image outcomes, the subset -------------------------------

def _dict(value: Any, path: Path, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, field, "an object", value)
    return value


def _agree(percent: Any, per_trial: Any, trials: int, path: Path, field: str, trial_field: str) -> None:
    """Per trial lists of ``trials`` fractions, each under a ``{mean, std}`` whose mean is theirs."""
    if isinstance(per_trial, list):
        if len(per_trial) != trials:
            raise _fail(path, trial_field, f"{trials} values (one per trial)", per_trial)
        mean = _dict(percent, path, field).get("mean")
        expected = 100 * float(np.mean(per_trial))
        if not _number(mean) or abs(mean - expected) > 1e-3:
            raise _fail(path, f"{field}.mean", f"{expected:.4f}, the mean of {trial_field}", mean)
        return
    per_trial = _dict(per_trial, path, trial_field)
    percent = _dict(percent, path, field)
    for key, item in per_trial.items():
        if key not in percent:
            raise _fail(path, f"{field}.{key}", f"an entry (as {trial_field}.{key} has)")
        _agree(percent[key], item, trials, path, f"{field}.{key}", f"{trial_field}.{key}")


def _per_image(values: Mapping[str, Any], path: Path) -> None:
    """Per-image outcomes that decode, over ``n`` images with the file's votes, whose means
    are the stored accuracies of their trials."""
    from ..evaluation.per_image import PerImageError, read_block

    block = _dict(values["per_image"], path, "per_image")
    n, votes = values["n"], values.get("votes", 1)
    if block.get("n") != n or block.get("votes", 1) != votes:
        raise _fail(path, "per_image.n", f"n {n} and votes {votes} as the file's",
                    {"n": block.get("n"), "votes": block.get("votes", 1)})
    try:
        shares = read_block(block)
    except PerImageError as error:
        raise _fail(path, "per_image.outcomes", "outcomes that decode", note=f" ({error})") from None
    stored = values["accuracy_per_trial"]
    for setting, per_attack in shares.items():
        for name, rows in per_attack.items():
            field = f"per_image.outcomes.{setting}.{name}"
            trials = stored.get(setting, {}).get(name) if isinstance(stored.get(setting), Mapping) else None
            if not isinstance(trials, list) or len(trials) != len(rows):
                raise _fail(path, field, f"one row per trial of accuracy_per_trial.{setting}.{name}",
                            note=f" ({len(rows)} rows)")
            tolerance = 0.5 / (n * votes) + 1e-6
            for trial, (row, accuracy) in enumerate(zip(rows, trials)):
                if abs(float(row.mean()) - accuracy) > tolerance:
                    raise _fail(path, f"{field}[{trial}]", f"outcomes whose mean is the stored accuracy "
                                f"{100 * accuracy:.2f} %", note=f" (their mean: {100 * float(row.mean()):.2f} %)")


def _evaluation(values: Mapping[str, Any], path: Path, settings: Mapping[str, Any] | None,
                matrix: bool = False) -> None:
    """``results.json`` (``matrix``: ``transfer.json``, source x target)."""
    for key in ("n", "trials", "accuracy_percent", "accuracy_per_trial"):
        if key not in values:
            raise _fail(path, key, "an entry", note=" (missing)")
    trials = values["trials"]
    if "seeds" in values and len(values["seeds"]) != trials:
        raise _fail(path, "seeds", f"{trials} seeds (one per trial)", values["seeds"])
    _agree(values["accuracy_percent"], values["accuracy_per_trial"], trials, path,
           "accuracy_percent", "accuracy_per_trial")
    if "majority_vote_accuracy_per_trial" in values:
        _agree(values.get("majority_vote_accuracy_percent"), values["majority_vote_accuracy_per_trial"],
               trials, path, "majority_vote_accuracy_percent", "majority_vote_accuracy_per_trial")
    subset = values.get("subset")
    if subset is not None:
        subset = _dict(subset, path, "subset")
        if subset.get("n") != values["n"] or not subset.get("n", 0) <= subset.get("of", 0):
            raise _fail(path, "subset.n", f"the file's n ({values['n']}), at most subset.of", subset.get("n"))
    wanted = (settings or {}).get("n")
    if _count(wanted) and (values["n"] != wanted if subset is not None else values["n"] > wanted):
        raise _fail(path, "n", f"{wanted} images, the step's subset", values["n"])
    if not matrix and values.get("per_image"):
        _per_image(values, path)


def _certification(values: Mapping[str, Any], path: Path, settings: Mapping[str, Any] | None) -> None:
    for key in ("images", "n", "n0", "certified_accuracy_percent"):
        if key not in values:
            raise _fail(path, key, "an entry", note=" (missing)")
    if values["n0"] > values["n"]:
        raise _fail(path, "n0", f"at most n ({values['n']})", values["n0"])


def _audit(values: Mapping[str, Any], path: Path, settings: Mapping[str, Any] | None) -> None:
    if "n" not in values:
        raise _fail(path, "n", "an entry", note=" (missing)")
    for name, sweep in _dict(values.get("sweeps", {}), path, "sweeps").items():
        _leaves(_dict(sweep, path, f"sweeps.{name}").get("accuracy", []), *FRACTION, path, f"sweeps.{name}.accuracy")


CHECKS: dict[str, Callable[[Mapping[str, Any], Path, Mapping[str, Any] | None], None]] = {
    RESULTS: _evaluation,
    TRANSFER: lambda v, p, s: _evaluation(v, p, s, matrix=True),
    CERTIFY: _certification,
    AUDIT: _audit,
}


def check_values(values: Any, path: Path, settings: Mapping[str, Any] | None = None) -> None:
    """ResultsFileError (one line naming ``path`` and the field) unless ``values``, the JSON
    of ``path`` (by its name), fits its schema; ``settings``: the step's (for the subset's n)."""
    if not isinstance(values, Mapping):
        raise _fail(path, "(top level)", "a JSON object", values)
    _walk(values, path)
    check = CHECKS.get(path.name)
    if check is not None:
        check(values, path, settings)


def read_checked(path: str | os.PathLike, settings: Mapping[str, Any] | None = None) -> Any:
    """A results file's JSON, checked (``check_values``); ResultsFileError when it is missing,
    not JSON (a truncated file) or fails its schema."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsFileError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    try:
        values = json.loads(text)
    except ValueError as error:
        raise ResultsFileError(f"{path}: not valid JSON (truncated?): {error}") from None
    check_values(values, path, settings)
    return values


# --- the readers the runner, the dry run and the report use -----------------------------------

_CHECKED: dict[tuple[str, int, int, str], str | None] = {}  # (file, mtime, size, settings) -> error
_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """One warning line on stderr, once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"pni: warning: {message}", file=sys.stderr, flush=True)


def file_problem(path: Path, settings: Mapping[str, Any] | None = None) -> str | None:
    """Why ``path`` fails its check (one line), or None; cached while the file is unchanged."""
    try:
        stat = path.stat()
    except OSError:
        return f"{path}: missing"
    key = (str(path), stat.st_mtime_ns, stat.st_size, json.dumps(settings, sort_keys=True, default=str))
    if key not in _CHECKED:
        try:
            read_checked(path, settings)
            _CHECKED[key] = None
        except ResultsFileError as error:
            _CHECKED[key] = str(error)
    return _CHECKED[key]


def output_ok(folder: Path, name: str, settings: Mapping[str, Any] | None = None) -> bool:
    """Whether a step's output ``name`` in ``folder`` passes its check (an image: its JSON);
    when not, one warning line naming the file and field: the step counts as not done."""
    path = folder / (name[:-4] + ".json" if name.endswith(".png") else name)
    problem = file_problem(path, settings)
    if problem is not None:
        warn_once(f"{problem}; the step counts as not done and is rerun")
    return problem is None


def read_timing(path: Path) -> dict[str, Any] | None:
    """A step's ``timing.json`` when it passes its check (seconds finite and >= 0); None when
    missing, and None with one warning line naming the file and field when it fails."""
    if not path.exists():
        return None
    problem = file_problem(path)
    if problem is None:
        values = json.loads(path.read_text())
        if _number(values.get("seconds")):
            return values
        problem = str(_fail(path, "seconds", "a number of seconds >= 0", values.get("seconds")))
    warn_once(f"{problem}; the step's time is left out of the estimates")
    return None


def checked_alphas(folder: Path, logged: Mapping[str, Any]) -> dict[str, float] | None:
    """Table 1's final alphas of the run in ``folder``: those of its ``checkpoint.pt`` (the
    log's last record ``logged`` is only checked against them: a log edited or out of step
    gives one warning line). None, with a warning, when the checkpoint cannot be read."""
    from ..models import load_model
    from ..noise import alpha_values

    try:
        model, checkpoint = load_model(checkpoint_path(folder))
    except PNIError as error:
        warn_once(f"{error}; its alphas are left out of the report")
        return None
    alphas = alpha_values(model)
    written = logged.get("alphas")
    if logged.get("epoch") == checkpoint.get("epoch") and not (
            isinstance(written, Mapping) and written.keys() == alphas.keys()
            and all(_number(written[k]) and math.isclose(written[k], v, rel_tol=1e-6, abs_tol=1e-9)
                    for k, v in alphas.items())):
        warn_once(f"{folder / 'train_log.jsonl'}: field 'alphas' of epoch {logged.get('epoch')}: expected the "
                  f"alphas of {folder / 'checkpoint.pt'}, got other values; the report uses the checkpoint's")
    return alphas


# --- stale temporary files ---------------------------------------------------------------------

_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")   # checkpoint.atomic_write's temporary files


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Removes the temporary files of atomic writes a killed process left in ``folder`` (call
    it holding the folder's lock: no live writer is there); returns them."""
    stale = [p for p in folder.glob(".*.tmp") if _TEMP.match(p.name)] if folder.is_dir() else []
    for path in stale:
        with suppress(FileNotFoundError):
            path.unlink()
    return stale
