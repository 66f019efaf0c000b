"""Per-image outcomes of an evaluation, compactly, for ``results.json`` (its ``per_image``
block): per noise setting, attack and trial, each evaluated image's share of correct noise
draws (one vote: correct or not), in the order the images were evaluated (a subset's
order), and a fingerprint of those images, so that two evaluations on the same images can
be compared image by image (``pni.reproduce.verdicts``: paired standard errors).

Encodings, one base64 string per trial:

- ``packbits`` (one vote): ``numpy.packbits`` of the correct-indicator (bit order big, the
  last byte padded with zeros); 1,000 images take 168 characters.
- ``counts-u8-zlib`` / ``counts-u16le-zlib`` (several votes): the number of correct draws
  of each image as uint8 (uint16 little-endian above 255 votes), zlib-compressed; the
  share is that number / ``votes``.

The mean of a trial's shares is that trial's accuracy (``accuracy_per_trial``).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import PNIError

PACKBITS, COUNTS_U8, COUNTS_U16 = "packbits", "counts-u8-zlib", "counts-u16le-zlib"
_DTYPES = {COUNTS_U8: np.dtype("u1"), COUNTS_U16: np.dtype("<u2")}
WHAT = ("per noise setting, attack and trial, each image's share of correct noise draws (one vote: "
        "correct or not), in the order of the evaluated images; encoding: pni.evaluation.per_image")


class PerImageError(PNIError):
    """A ``per_image`` block that cannot be read (bad encoding, wrong length, bad counts)."""


def encoding_for(votes: int) -> str:
    """The encoding of evaluations judged over ``votes`` noise draws."""
    return PACKBITS if votes == 1 else COUNTS_U8 if votes <= 255 else COUNTS_U16


def labels_digest(labels: Any) -> str:
    """A fingerprint of the evaluated images' labels in their order (sha256 of the int64
    little-endian labels, 16 hex digits): with the subset's ``indices_sha256`` and ``n``, it
    tells whether two evaluations ran on the same images in the same order."""
    return hashlib.sha256(np.asarray(labels, dtype="<i8").tobytes()).hexdigest()[:16]


def encode(shares: Any, votes: int = 1) -> str:
    """One trial's per-image shares of correct draws (``(n,)``, values ``k / votes``) as text."""
    values = np.asarray(shares, dtype=np.float64).reshape(-1)
    encoding = encoding_for(votes)
    if encoding == PACKBITS:
        return base64.b64encode(np.packbits(values > 0.5).tobytes()).decode("ascii")
    counts = np.rint(values * votes).astype(_DTYPES[encoding])
    return base64.b64encode(zlib.compress(counts.tobytes(), 9)).decode("ascii")


def decode(text: str, encoding: str, n: int, votes: int = 1) -> np.ndarray:
    """The shares (float64, ``(n,)``) ``encode`` wrote; PerImageError when unreadable."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        if encoding == PACKBITS:
            if len(raw) != (n + 7) // 8:
                raise PerImageError(f"{len(raw)} bytes of packed bits, expected {(n + 7) // 8} for {n} images")
            return np.unpackbits(np.frombuffer(raw, np.uint8), count=n).astype(np.float64)
        if encoding not in _DTYPES:
            raise PerImageError(f"unknown encoding {encoding!r} (known: {PACKBITS}, {COUNTS_U8}, {COUNTS_U16})")
        counts = np.frombuffer(zlib.decompress(raw), _DTYPES[encoding])
    except (binascii.Error, zlib.error, UnicodeEncodeError, AttributeError) as error:
        raise PerImageError(f"unreadable per-image outcomes: {type(error).__name__}: {error}") from None
    if len(counts) != n or (counts > votes).any():
        raise PerImageError(f"per-image counts: {len(counts)} values (expected {n}), largest "
                            f"{counts.max() if len(counts) else 0} (at most {votes} votes)")
    return counts.astype(np.float64) / votes


def block(shares: Mapping[str, Mapping[str, Any]], n: int, votes: int = 1,
          labels_sha256: str | None = None, subset: bool = False) -> dict[str, Any]:
    """The ``per_image`` block of ``results.json``: ``shares`` is ``{setting: {attack:
    (trials, n)}}`` (tensors or arrays); ``subset``: the images are a recorded subset."""
    out: dict[str, Any] = {"what": WHAT, "encoding": encoding_for(votes), "votes": votes, "n": n,
                           "order": "the subset's (subset.indices_sha256)" if subset else "the data's"}
    if labels_sha256 is not None:
        out["labels_sha256"] = labels_sha256
    out["outcomes"] = {setting: {name: [encode(row, votes) for row in np.atleast_2d(np.asarray(per_trial))]
                                 for name, per_trial in per_attack.items()}
                       for setting, per_attack in shares.items()}
    return out


def read_block(values: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """``{setting: {attack: (trials, n) float64}}`` from a ``per_image`` block; PerImageError
    when it cannot be read."""
    try:
        n, votes, encoding = int(values["n"]), int(values.get("votes", 1)), str(values["encoding"])
        if votes < 1 or n < 0:
            raise PerImageError(f"per-image outcomes: bad n {n} or votes {votes}")
        return {setting: {name: np.stack([decode(t, encoding, n, votes) for t in trials])
                          for name, trials in per_attack.items()}
                for setting, per_attack in values["outcomes"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, PerImageError):
            raise
        raise PerImageError(f"not a per-image block: {type(error).__name__}: {error}") from None


def fingerprint(results: Mapping[str, Any]) -> str | None:
    """Which images a ``results.json``'s per-image outcomes are over, in their order: the
    subset's ``indices_sha256`` (or "all"), the labels' digest and ``n``; None without the
    labels' digest (nothing to compare)."""
    found = results.get("per_image") or {}
    labels = found.get("labels_sha256") if isinstance(found, Mapping) else None
    if not labels:
        return None
    subset = results.get("subset") or {}
    return f"{subset.get('indices_sha256', 'all')}/{labels}/n={found.get('n', results.get('n'))}"


def shares(results: Mapping[str, Any] | None, setting: str, attack: str) -> np.ndarray | None:
    """The ``(trials, n)`` per-image shares of ``attack`` in noise ``setting`` from a
    ``results.json``; None when it has none (an older file) or they cannot be read."""
    found = (results or {}).get("per_image")
    if not isinstance(found, Mapping):
        return None
    try:
        return read_block({**found, "outcomes": {setting: {attack: found["outcomes"][setting][attack]}}}
                          )[setting][attack]
    except (KeyError, TypeError, PerImageError):
        return None
