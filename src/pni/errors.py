"""PNIError, the base of every pni error: a user mistake or a failure whose message says in
one line what went wrong (the ``pni`` command prints it and exits 2). Imports nothing."""
from __future__ import annotations


class PNIError(ValueError):
    """The base of every pni error; catch it to handle any of them. Each module's own error
    (``DataError``, ``CheckpointError``, ``NoiseError``, ...) subclasses it."""
