"""Alert rules: the expression grammar, the series a rule may name, and when a rule fires.

``SERIES OP NUMBER [for N windows | for DURATION]``. Without ``for`` the newest point
decides; ``for N windows``: the N newest points all hold; ``for DURATION``: the condition held
over the whole duration — the newest point at or before ``now - DURATION`` and every point
after it hold (a series younger than the duration does not fire).
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from strata.core.errors import InvalidInput
from strata.monitoring.models import SeriesPoint

_EXPR = re.compile(
    r"^\s*(?P<series>[A-Za-z_][A-Za-z0-9_.\-\[\]=]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s+for\s+(?:(?P<windows>\d+)\s+windows?|(?P<dur>\d+)\s*(?P<unit>[smhd])))?\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: Series every model may have, whatever has been recorded yet.
PERFORMANCE = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "mape",
)
HEALTH = (
    "p50_latency_ms", "p90_latency_ms", "p99_latency_ms", "throughput_rps", "error_rate",
    "requests", "batch_size_mean", "queue_time_ms", "cpu_percent", "memory_mb",
)  # fmt: skip
STATIC = frozenset(
    ("drift.share", "coverage", *PERFORMANCE, *(f"estimated.{m}" for m in PERFORMANCE), *HEALTH)
)


@dataclass(frozen=True)
class Condition:
    series: str
    op: str
    threshold: float
    windows: int | None = None
    duration_s: int | None = None

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


def parse(expr: str) -> Condition:
    m = _EXPR.match(expr)
    if not m:
        raise InvalidInput(
            f"rule expression {expr!r} is not SERIES OP NUMBER [for N windows | for DURATION], "
            "e.g. 'drift.share > 0.3 for 2 windows', 'p99_latency_ms > 50 for 5m', 'f1 < 0.7'",
            details={"field": "expr"},
        )
    windows = int(m["windows"]) if m["windows"] else None
    duration = int(m["dur"]) * _SECONDS[m["unit"]] if m["dur"] else None
    if windows == 0 or duration == 0:
        raise InvalidInput("a rule's 'for' must be at least 1", details={"field": "expr"})
    return Condition(m["series"], m["op"], float(m["value"]), windows, duration)


def check_series(cond: Condition, recorded: Sequence[str]) -> None:
    """InvalidInput unless the series is a known name or one recorded for the model."""
    if cond.series in STATIC or cond.series in recorded:
        return
    known = sorted(STATIC | set(recorded))
    raise InvalidInput(
        f"unknown series {cond.series!r}; known: {', '.join(known)} "
        "(drift.score.<column> once a drift of that column is stored)",
        details={"field": "expr", "series": cond.series},
    )


def fires(cond: Condition, points: Sequence[SeriesPoint], now: dt.datetime) -> bool:
    """Whether ``points`` (oldest first, up to ``now``) make the condition fire now."""
    pts = [p for p in points if p.ts <= now]
    if not pts:
        return False
    if cond.windows is not None:
        last = pts[-cond.windows :]
        return len(last) == cond.windows and all(cond.holds(p.value) for p in last)
    if cond.duration_s is not None:
        start = now - dt.timedelta(seconds=cond.duration_s)
        before = [p for p in pts if p.ts <= start]
        if not before:
            return False
        span = [before[-1], *(p for p in pts if p.ts > start)]
        return all(cond.holds(p.value) for p in span)
    return cond.holds(pts[-1].value)


def needed(cond: Condition) -> int:
    """How many newest points evaluation reads (a duration reads by time instead)."""
    return cond.windows or 1
