"""Scales for the dashboard's SVG charts, which are drawn in Jinja (templates/staff/_charts.html)."""

from __future__ import annotations

import math


def count_axis(largest: int, ticks: int = 4) -> list[int]:
    """Round gridline values from 0 to at least ``largest`` (1, 2, 2.5 or 5 × 10ⁿ steps)."""
    if largest <= 0:
        return [0, 1]
    raw = largest / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    step = max(1, math.ceil(step))
    top = math.ceil(largest / step) * step
    return list(range(0, top + 1, step))


def label_every(count: int, room: int = 10) -> int:
    """Label one bar in this many, so that at most ``room`` labels fit under the axis."""
    return max(1, math.ceil(count / room))
