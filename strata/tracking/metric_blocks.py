"""Metric points packed per key as numpy arrays: the unit of storage of metric history."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.tracking.models import Metric, MetricPoint
from strata.tracking.validation import validate_key


class MetricBlock:
    """Points of one metric as parallel numpy arrays (steps, timestamps, values)."""

    __slots__ = ("steps", "timestamps", "values")

    def __init__(self, steps: np.ndarray, timestamps: np.ndarray, values: np.ndarray) -> None:
        self.steps = steps
        self.timestamps = timestamps
        self.values = values

    def latest_index(self) -> int:
        vals = np.where(np.isnan(self.values), -np.inf, self.values)
        return int(np.lexsort((vals, self.timestamps, self.steps))[-1])

    def points(self, key: str, run_id: str | None, limit: int | None) -> list[MetricPoint]:
        n = len(self.steps) if limit is None else min(limit, len(self.steps))
        rows = zip(
            repeat(key, n),
            self.values[:n].tolist(),
            self.timestamps[:n].tolist(),
            self.steps[:n].tolist(),
            repeat(run_id, n),
            strict=True,
        )
        # tuple.__new__ straight from C: the named tuple's own __new__ is Python code and
        # would cost ~1 µs a point (0.1 s for a 100k-step history). The collector is paused
        # meanwhile: 100k new tuples would otherwise trigger repeated full scans of a big heap.
        paused = gc.isenabled()
        gc.disable()
        try:
            return list(map(tuple.__new__, repeat(MetricPoint, n), rows))
        finally:
            if paused:
                gc.enable()


def metric_blocks(metrics: Sequence[Metric]) -> dict[str, MetricBlock]:
    """Validate metric points and pack them per key (the logging hot path).

    Raises InvalidInput naming the key when a value is not a number or a step/timestamp is
    not an integer.
    """
    cols: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    for key, value, ts, step in metrics:
        c = cols.get(key)
        if c is None:
            validate_key(key, "metric")
            c = cols[key] = ([], [], [])
        c[0].append(value)
        c[1].append(ts)
        c[2].append(step)
    out: dict[str, MetricBlock] = {}
    for key, (values, stamps, steps) in cols.items():
        try:
            v = np.asarray(values, dtype="<f8")
        except (TypeError, ValueError):
            raise InvalidInput(
                f"Metric {key!r} values must be numbers",
                details={"field": "metric.value", "key": key},
            ) from None
        try:
            t = np.asarray(stamps, dtype="<i8")
            st = np.asarray(steps, dtype="<i8")
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(
                f"Metric {key!r} timestamps and steps must be integers",
                details={"field": "metric.step", "key": key},
            ) from None
        if v.ndim != 1 or t.ndim != 1 or st.ndim != 1:
            raise InvalidInput(
                f"Metric {key!r} values must be scalars",
                details={"field": "metric.value", "key": key},
            )
        out[key] = MetricBlock(st, t, v)
    return out
