"""Text for people: durations, fixed-width tables and one-line quotes of errors.

Every table and message ninsweep prints or writes takes these from here, so a duration or an
error reads the same in ``status``, the report, ``jobs`` and the progress lines. Pure
functions of their arguments: no pandas, no torch, nothing of ninsweep (``errors`` imports
this module).
"""

from __future__ import annotations

import json
import math
from typing import Any, Collection, Optional, Sequence


def clock(seconds: float) -> str:
    """A running time or an ETA as a clock: ``m:ss`` or ``h:mm:ss`` (rounded; never negative)."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def size_text(size: float) -> str:
    """A number of bytes for a person: ``512 B``, ``3.4 KiB``, ``0.7 MiB``, ``12.0 GiB``."""
    size = max(float(size), 0.0)
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


def duration(seconds: Any) -> str:
    """A time in a table: ``12.3s``, ``5m12s``, ``2h59m``; ``-`` when missing (None, NaN)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):  # None, pandas' NA
        return "-"
    if not math.isfinite(value):
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def value_text(value: Any) -> str:
    """A setting's value as a person writes it in YAML: true / false, 0.25 and 2 (not 2.0),
    1e-05, [81,122], null; anything else as ``str()``. The one formatter of values for the dry
    run, config labels, factor levels and messages (numpy scalars read as their Python value).
    """
    if hasattr(value, "dtype") and hasattr(value, "item"):
        value = value.item()  # np.float64(0.1) -> 0.1: numpy 2 writes its type into repr()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    if value is None:
        return "null"
    return str(value)


def first_line(value: object, limit: Optional[int] = None) -> str:
    """The first non-empty line of ``value`` (an exception, a file's content), stripped and cut
    to ``limit`` characters (ending in ``...``): what a one-line message quotes of an error
    raised by a library or user code. An exception without a message gives its type's name."""
    line = next((line.strip() for line in str(value).splitlines() if line.strip()), "")
    if not line and isinstance(value, BaseException):
        line = type(value).__name__
    return line if limit is None or len(line) <= limit else line[:limit - 3] + "..."


def last_line(text: str, limit: Optional[int] = None) -> Optional[str]:
    """The last non-empty line of ``text`` (a traceback's, whose last line names the error),
    stripped and cut like ``first_line``; None when there is none."""
    lines = [line for line in text.splitlines() if line.strip()]
    return first_line(lines[-1], limit) if lines else None


def reason(err: BaseException) -> str:
    """Why an operating-system call failed, in a few words: the OS's text (``No space left
    on device``), or the first line of another error's message."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return first_line(err, 300)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) as one space: a multi-line
    message (a YAML parser's, a pydantic error) kept whole on one line."""
    return " ".join(str(text).split())


def table(header: Optional[Sequence[str]], rows: Sequence[Sequence[Any]], align: str = "",
          rule: bool = False, indent: str = "", sep: str = "  ") -> list[str]:
    """A fixed-width text table as lines (rows of equal length): each column as wide as its
    widest cell, cells separated by ``sep``, trailing blanks cut.

    ``align``: one character per column, ``<`` (left, the default for missing ones) or ``>``
    (right). ``header``: the first line, or None for none; ``rule``: a line of dashes under it.
    Cells are ``str()``-ed.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    head = [str(h) for h in header] if header is not None else None
    grid = ([head] if head is not None else []) + cells
    widths = [max(len(value) for value in column) for column in zip(*grid)]

    def line(values: Sequence[str]) -> str:
        padded = [value.rjust(width) if align[i:i + 1] == ">" else value.ljust(width)
                  for i, (value, width) in enumerate(zip(values, widths))]
        return (indent + sep.join(padded)).rstrip()

    lines = []
    if head is not None:
        lines.append(line(head))
        if rule:
            lines.append(line(["-" * width for width in widths]))
    return lines + [line(row) for row in cells]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   right: Collection[str] = ()) -> list[str]:
    """A Markdown (GitHub) table as lines; columns named in ``right`` are right-aligned. Cells
    are ``str()``-ed, their ``|`` escaped and newlines made spaces."""
    rule = ["---:" if h in right else "---" for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    return lines + ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]


def markdown_cell(value: Any) -> str:
    """``value`` as text that keeps a Markdown table (or list item) whole."""
    return str(value).replace("|", "\\|").replace("\n", " ")
