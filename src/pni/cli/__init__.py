"""The ``pni`` command: ``app`` builds the parser and runs a subcommand; one module per
subcommand (``info``, ``train``, ``evaluate``, ``transfer``, ``audit``, ``report``, ``demo``,
``certify``, ``reproduce``, ``benchmark``: leaderboard and any-model evaluation); ``args`` makes
flags from the settings dataclasses. It only parses and calls the library, and prints any
``PNIError`` in one line."""
from .app import build_parser, main

__all__ = ["build_parser", "main"]
