"""PNIError, the base of every pni error: a user mistake or a failure whose message says in
one line what went wrong (the ``pni`` command prints it and exits 2); ``did_you_mean`` adds
the closest valid name to such a line. Imports nothing from pni."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class PNIError(ValueError):
    """The base of every pni error; catch it to handle any of them. Each module's own error
    (``DataError``, ``CheckpointError``, ``NoiseError``, ...) subclasses it."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` with the closest of ``choices`` to a mistyped ``word``, or ""."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
