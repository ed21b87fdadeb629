"""Small text charts for the terminal: a metric's curve in a few lines of plain characters."""

from __future__ import annotations

import math
from collections.abc import Sequence


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with an ellipsis."""
    if width < 2 or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(
    xs: Sequence[float], ys: Sequence[float], *, width: int = 60, height: int = 10
) -> list[str]:
    """The curve of ``ys`` over ``xs`` (sorted ascending) as ``height`` + 2 lines of text.

    Points fall into ``width`` columns by x; a column marks its mean with ``•`` and the span
    from its lowest to its highest point with ``│``, so noise stays visible once many points
    share a column. Non-finite values are left out (the caller says how many). The y axis is
    labelled with the top and bottom values, the x axis with the first and last x.
    """
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not points:
        return ["(no finite values to draw)"]
    width, height = max(width, 2), max(height, 2)
    lo = min(y for _, y in points)
    hi = max(y for _, y in points)
    x0, x1 = points[0][0], points[-1][0]
    columns: list[list[float]] = [[] for _ in range(width)]
    for x, y in points:
        col = 0 if x1 == x0 else min(int((x - x0) / (x1 - x0) * width), width - 1)
        columns[col].append(y)

    def row(y: float) -> int:  # 0 = top line
        if hi == lo:
            return height // 2
        return round((hi - y) / (hi - lo) * (height - 1))

    grid = [[" "] * width for _ in range(height)]
    for col, values in enumerate(columns):
        if not values:
            continue
        top, bottom = row(max(values)), row(min(values))
        for r in range(top, bottom + 1):
            grid[r][col] = "│"
        grid[row(sum(values) / len(values))][col] = "•"
    labels = {0: _label(hi), height - 1: _label(lo)}
    pad = max(len(s) for s in labels.values())
    lines = [f"{labels.get(r, ''):>{pad}} ┤{''.join(cells)}" for r, cells in enumerate(grid)]
    lines.append(" " * pad + " └" + "─" * width)
    first, last = _label(x0), _label(x1)
    lines.append(" " * (pad + 2) + first + last.rjust(width - len(first)))
    return lines
