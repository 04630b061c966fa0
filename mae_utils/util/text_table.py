"""Plain-text tables for the commands' printed results: one layout, so every table reads alike."""

from __future__ import annotations


def aligned_table(rows: list[list[str]]) -> list[str]:
    """``rows`` (the header first) as lines: the first column left-aligned (names), the others
    right-aligned (numbers), two spaces between columns and a dashed rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
