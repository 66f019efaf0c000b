"""The ``pni`` command: one module per subcommand family (``commands`` parses and dispatches,
``args`` makes flags from the settings dataclasses, ``certify``, ``reproduce``, ``demo``); it
only parses and calls the library, and prints any ``PNIError`` in one line."""
from .commands import main

__all__ = ["main"]
