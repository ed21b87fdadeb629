"""Timing helpers the benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(
    n: int, fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter
) -> tuple[Any, float]:
    """``fn()``'s last result and its least time over ``n`` calls, in seconds of ``clock``
    (wall time by default; ``time.thread_time`` for this thread's CPU)."""
    best, out = float("inf"), None
    for _ in range(n):
        start = clock()
        out = fn()
        best = min(best, clock() - start)
    return out, best
