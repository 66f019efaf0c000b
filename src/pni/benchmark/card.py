"""The benchmark card: one JSON file per judged model (schema: ``docs/BENCHMARK.md``).

``make_card`` builds it from an evaluation and an audit, ``validate_card`` checks a card
against ``SCHEMA`` (every required field, its type, the protocol known, percentages in
[0, 100]), ``read_card`` reads and validates one, ``write_card`` writes one atomically.
"""
from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .protocol import PROTOCOLS, BenchmarkError

CARD_VERSION = 1

NUM = (int, float)
OPT_STR = (str, type(None))
ESTIMATE = {"mean": NUM, "stderr": NUM}
# the schema: field -> type(s), or a nested schema (dict), or [schema] for a list of them
SCHEMA: dict[str, Any] = {
    "card_version": int,
    "protocol": {"name": str, "version": int, "budget": str, "changes": dict, "settings": dict},
    "model": {"name": str, "source": str, "parameters": int, "randomized": bool,
              "weights_sha256": OPT_STR},
    "data": {"dataset": str, "split": str, "n": int, "subset_seed": int, "labels_sha256": OPT_STR},
    "threat": {"norm": str, "eps": NUM},
    "accuracy": {"clean": ESTIMATE, "paper_pgd": ESTIMATE, "honest_worst_case": ESTIMATE,
                 "honest_worst_case_majority": ESTIMATE, "per_attack": dict},
    "gap": {"points": NUM, "stderr": NUM},
    "attacks": dict,
    "audit": {"passed": (bool, type(None)), "verdict": str,
              "items": [{"number": int, "name": str, "verdict": str, "summary": str}]},
    "code": {"pni_version": str, "git_commit": OPT_STR},
    "created": str,
}


def estimate(per_image: Tensor) -> dict[str, float]:
    """Mean and its standard error over the images, in percent."""
    values = per_image.double() * 100
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    stderr = float(values.std() / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": mean, "stderr": stderr}


def code_record() -> dict[str, Any]:
    """pni's version and the git commit of its source tree (``+dirty`` with uncommitted changes;
    None outside a git checkout), in the card's spelling of ``pni.provenance.code_version``."""
    from ..provenance import code_version

    code = code_version()
    commit = code["commit"]
    if commit and code["dirty"]:
        commit += "+dirty"
    return {"pni_version": code["pni"], "git_commit": commit}


def make_card(*, name: str, source: str, parameters: int, randomized: bool, weights_sha256: str | None,
              protocol: Any, budget: str, changes: dict[str, Any], data: dict[str, Any],
              threat: Any, per_image: dict[str, Tensor], majority_worst: Tensor,
              attacks: dict[str, Any], audit: Any, code: dict[str, Any] | None = None) -> dict[str, Any]:
    """A card from the per-image shares of correct draws (``per_image``: attack -> (n,),
    "worst-case" included) and the audit report (None: not run); ``code``: pni's version and
    commit when the run started (default: now)."""
    worst, paper = per_image["worst-case"], per_image[protocol.paper_attack]
    gap = estimate(paper - worst)
    items = [] if audit is None else [
        {"number": i.number, "name": i.name, "verdict": i.verdict, "summary": i.summary} for i in audit.items]
    card = {
        "card_version": CARD_VERSION,
        "protocol": {"name": protocol.name, "version": protocol.version, "budget": budget,
                     "changes": changes, "settings": protocol.to_json()},
        "model": {"name": name, "source": source, "parameters": int(parameters), "randomized": bool(randomized),
                  "weights_sha256": weights_sha256},
        "data": data,
        "threat": threat.to_json(),
        "accuracy": {"clean": estimate(per_image["clean"]), "paper_pgd": estimate(paper),
                     "honest_worst_case": estimate(worst),
                     "honest_worst_case_majority": estimate(majority_worst.float()),
                     "per_attack": {k: estimate(v) for k, v in per_image.items()}},
        "gap": {"points": gap["mean"], "stderr": gap["stderr"]},
        "attacks": attacks,
        "audit": {"passed": None if audit is None else not audit.failed,
                  "verdict": "not run" if audit is None else audit.verdict(), "items": items},
        "code": code or code_record(),
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    validate_card(card)
    return card


def _check(value: Any, schema: Any, where: str) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise BenchmarkError(f"card field {where or 'root'} must be an object, got {type(value).__name__}")
        for key, sub in schema.items():
            if key not in value:
                raise BenchmarkError(f"card field {where + '.' if where else ''}{key} is missing")
            _check(value[key], sub, f"{where + '.' if where else ''}{key}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise BenchmarkError(f"card field {where} must be a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, schema[0], f"{where}[{i}]")
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BenchmarkError(f"card field {where} must be {names}, got {type(value).__name__}")


def validate_card(card: Any) -> dict[str, Any]:
    """``card`` when it follows ``SCHEMA`` (docs/BENCHMARK.md); else a one-line BenchmarkError
    naming the field."""
    _check(card, SCHEMA, "")
    if card["card_version"] != CARD_VERSION:
        raise BenchmarkError(f"card_version {card['card_version']} is not supported (this pni reads {CARD_VERSION})")
    if card["protocol"]["name"] not in PROTOCOLS:
        raise BenchmarkError(f"card protocol {card['protocol']['name']!r} is unknown to this pni "
                             f"({', '.join(PROTOCOLS)})")
    accuracy = card["accuracy"]
    for key in ("clean", "paper_pgd", "honest_worst_case", "honest_worst_case_majority"):
        mean = accuracy[key]["mean"]
        if not (0.0 <= mean <= 100.0) and not math.isnan(mean):
            raise BenchmarkError(f"card field accuracy.{key}.mean must be a percentage in [0, 100], got {mean}")
    for name, value in accuracy["per_attack"].items():
        _check(value, ESTIMATE, f"accuracy.per_attack.{name}")
    if card["data"]["n"] < 1:
        raise BenchmarkError("card field data.n must be >= 1")
    return card


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """A card file, validated; one-line BenchmarkError naming the file otherwise."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BenchmarkError(f"cannot read card {str(path)!r}: {error}") from None
    try:
        return validate_card(card)
    except BenchmarkError as error:
        raise BenchmarkError(f"card {str(path)!r}: {error}") from None


def write_card(card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Validates and writes ``card`` (indented JSON, atomically)."""
    from ..files import write_json

    validate_card(card)
    return write_json(card, path, what="benchmark card")


def per_image_shares(fractions: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each attack's per-image share of correct draws, averaged over the trials."""
    return {name: torch.as_tensor(v).float().mean(0) for name, v in fractions.items()}
