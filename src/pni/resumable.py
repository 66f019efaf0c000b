"""Batches of a long computation kept as they finish, so that a stopped one resumes mid-way.

``resumable_batches(count, compute)`` runs ``compute(0) ... compute(count - 1)`` and returns
their results. Inside a ``batch_record`` (an evaluation with a partial file opens one per
attack and trial), each finished batch's result is recorded with the random state after it,
and the record is saved (at most every ``SAVE_EVERY_S`` seconds, and when a batch fails); a
later call with the same record reuses the finished batches, restores the random state the
last of them left, and computes only the rest: the results are exactly those of one
uninterrupted run, even when the batches draw from one random stream (ZOO's batches of 8
images, a noisy model's draws). Loops nest: an attack's own batches inside an evaluation's
batch are recorded under that batch, and dropped once it finishes.

The same scopes carry progress: ``report`` gets each batch's share of the work as it
finishes (a nested loop's batches report fractions of their parent's share), so a single
long evaluation batch of ZOO still moves its bar batch by batch; the reused batches are
reported while ``replaying()`` is true (done before, not now: not part of the pace).

Outside any record (a plain ``pni.attacks.zoo`` call) ``resumable_batches`` is a loop.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .seeding import rng_state, set_rng_state

T = TypeVar("T")

SAVE_EVERY_S = 20.0   # a record is saved at most this often (and whenever a batch fails)


class BatchRecord:
    """The finished batches of one computation: ``batches`` maps a loop's path to its finished
    results in order (``{"result": ..., "rng": rng_state()}``), on the CPU, as ``torch.save``
    with ``weights_only`` reads them; ``save`` persists the whole record."""

    def __init__(self, batches: dict[str, list[dict[str, Any]]], save: Callable[[], None]) -> None:
        self.batches, self._save, self._saved_at = batches, save, time.monotonic()

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._saved_at >= SAVE_EVERY_S:
            self._save()
            self._saved_at = now

    def drop(self, prefix: str) -> None:
        """Forgets every loop recorded under ``prefix`` (its results live on in their parent)."""
        for path in [p for p in self.batches if p == prefix or p.startswith(prefix + "/")]:
            del self.batches[path]


@dataclass
class _Scope:
    record: BatchRecord | None
    path: str
    weight: float                               # this scope's share of the work
    report: Callable[[float], None] | None
    loops: int = 0                              # loops opened in this scope so far
    reported: float = 0.0                       # what its nested loops have reported

    def add(self, amount: float) -> None:
        self.reported += amount
        if self.report is not None:
            self.report(amount)


_CURRENT: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("pni_resumable_scope", default=None)
_REPLAYING: contextvars.ContextVar[bool] = contextvars.ContextVar("pni_resumable_replaying", default=False)


def replaying() -> bool:
    """True while ``resumable_batches`` reports the batches a stopped run finished (reused, not
    computed now): a progress report can count them as done without counting them in its pace."""
    return _REPLAYING.get()


@contextlib.contextmanager
def batch_record(record: BatchRecord, path: str, weight: float = 0.0,
                 report: Callable[[float], None] | None = None) -> Iterator[None]:
    """The loops run inside are recorded in ``record`` under ``path``; ``weight``: their work
    in the units of ``report`` (which gets it bit by bit as their batches finish)."""
    token = _CURRENT.set(_Scope(record, path, weight, report))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def resumable_batches(count: int, compute: Callable[[int], T], *, sizes: Sequence[float] | None = None,
                      report: Callable[[float], None] | None = None,
                      device: torch.device | str | None = None) -> list[T]:
    """``[compute(i) for i in range(count)]``, recorded and resumed inside a ``batch_record``.

    ``sizes``: each batch's share of the work (default: the enclosing scope's share split
    evenly); ``report``: called with it as each batch finishes (default: the enclosing
    scope's). ``device``: where reused results are moved (they are kept on the CPU).
    """
    outer = _CURRENT.get()
    if outer is None:
        outer = _Scope(None, "", 0.0, None)
    path = f"{outer.path}/{outer.loops}"
    outer.loops += 1
    if sizes is None:
        sizes = [max(outer.weight - outer.reported, 0.0) / count] * count if count else []
    target = report if report is not None else outer.add

    def sink(amount: float) -> None:   # (a batch whose nested loops reported it all adds nothing)
        if amount > 1e-9:
            target(amount)

    record = outer.record
    finished = record.batches.setdefault(path, []) if record is not None else []
    results: list[T] = [_moved(entry["result"], device) for entry in finished[:count]]
    token = _REPLAYING.set(True)
    try:
        for size in sizes[:len(results)]:
            sink(size)
    finally:
        _REPLAYING.reset(token)
    if results:
        set_rng_state(finished[len(results) - 1]["rng"])
    for i in range(len(results), count):
        scope = _Scope(record, f"{path}:{i}", sizes[i], sink)
        token = _CURRENT.set(scope)
        try:
            result = compute(i)
        except BaseException:
            if record is not None:
                record.save(force=True)
            raise
        finally:
            _CURRENT.reset(token)
        results.append(result)
        sink(max(sizes[i] - scope.reported, 0.0))
        if record is not None:
            record.drop(f"{path}:{i}")
            finished.append({"result": _moved(result, "cpu"), "rng": rng_state()})
            record.save()
    return results


S = TypeVar("S")


def resumable_chain(count: int, advance: Callable[[int, S], S], state: S, *,
                    device: torch.device | str | None = None) -> S:
    """``state = advance(i, state)`` for ``i`` in ``range(count)``, resumed mid-way inside a
    ``batch_record``: after each step the record keeps a copy of the state it left (only the
    latest) with the random state, so a stopped chain restarts at its next step from them, with
    the results of an uninterrupted one. For a loop whose steps each need the last one's state
    (ZOO's iterations on one batch: an EOT-ZOO batch of a noisy ResNet-20 runs an hour on a
    CPU). ``state``: tensors in tuples, lists and dicts (kept on the CPU, moved back to
    ``device``); ``advance`` may change them in place. Its progress is that of the enclosing
    scope, split evenly over the steps."""
    outer = _CURRENT.get()
    if outer is None:
        outer = _Scope(None, "", 0.0, None)
    path = f"{outer.path}/{outer.loops}"
    outer.loops += 1
    share = max(outer.weight - outer.reported, 0.0) / count if count else 0.0
    record = outer.record
    saved = record.batches.get(path) if record is not None else None
    start = 0
    if saved:
        start, state = saved[-1]["result"]["done"], _moved(saved[-1]["result"]["state"], device)
        set_rng_state(saved[-1]["rng"])
        token = _REPLAYING.set(True)
        try:
            outer.add(share * start)
        finally:
            _REPLAYING.reset(token)
    for i in range(start, count):
        state = advance(i, state)
        outer.add(share)
        if record is not None:
            record.batches[path] = [{"result": {"done": i + 1, "state": _moved(state, "cpu", copy=True)}, "rng": rng_state()}]
            record.save()
    return state


def _moved(value: Any, device: torch.device | str | None, copy: bool = False) -> Any:
    """``value`` (tensors in tuples, lists and dicts) with its tensors on ``device`` (None: as is);
    ``copy``: always new tensors (a snapshot the caller may go on changing the originals of)."""
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to(device, copy=True) if copy else value.to(device)
    if isinstance(value, tuple):
        return tuple(_moved(v, device, copy) for v in value)
    if isinstance(value, list):
        return [_moved(v, device, copy) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, device, copy) for k, v in value.items()}
    return value
