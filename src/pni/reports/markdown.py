"""Markdown tables: the one ``md_table`` every pni report builds its tables with, and the
cell formats they share (``84.89±0.11``, parameter values to 4 significant digits)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ALIGN_RULES = {None: "---", "left": ":---", "right": "---:", "center": ":---:"}


def md_cell(value: Any) -> str:
    """A table cell: ``|`` escaped, line breaks as spaces (a cell is one line)."""
    return " ".join(str(value).replace("|", "\\|").splitlines())


def md_table(header: Sequence[Any], rows: Sequence[Sequence[Any]],
             align: Sequence[str | None] | None = None) -> str:
    """A Markdown table, one line per row, ending in a newline.

    ``align`` gives each column ``"left"``, ``"right"``, ``"center"`` or ``None`` (the
    renderer's default); every cell has ``|`` escaped. A row shorter than the header is
    padded with ``-``; a longer one is an error.
    """
    width = len(header)
    if align is None:
        align = [None] * width
    if len(align) != width:
        raise ValueError(f"md_table: {len(align)} alignments for {width} columns")
    try:
        rules = [ALIGN_RULES[a] for a in align]
    except KeyError as error:
        raise ValueError(f"md_table: alignment {error.args[0]!r}; expected one of "
                         "'left', 'right', 'center' or None") from error
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "|".join(rules) + "|"]
    for row in rows:
        cells = [md_cell(c) for c in row]
        if len(cells) > width:
            raise ValueError(f"md_table: a row of {len(cells)} cells under {width} columns")
        cells += ["-"] * (width - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_cell(stats: dict[str, float] | None, trials: int) -> str:
    """``84.89±0.11`` as in the paper; a single trial gives the mean alone; none: ``-``."""
    if stats is None:
        return "-"
    if trials > 1:
        return f"{stats['mean']:.2f}±{stats['std']:.2f}"
    return f"{stats['mean']:.2f}"


def format_value(value: Any) -> str:
    """A parameter value for a report: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_settings(params: dict[str, Any]) -> str:
    """``eps=0.03137, steps=7``: an attack's settings on one line."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
