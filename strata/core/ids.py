"""Opaque, time-sortable identifiers."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0


def new_id() -> str:
    """A 32-character lowercase hex id: 48 bits of epoch milliseconds, then 80 random bits.

    Ids sort by creation time (to the millisecond; ties are broken by a counter within one
    process) and are never reused. The shape matches MLflow run ids (uuid4 hex), so MLflow
    clients accept them.
    """
    global _last
    with _lock:
        ms = int(time.time() * 1000)
        _last = max(ms << 16, _last + 1)
        stamp = _last
    # 64 bits of time+counter then 64 random bits = 128 bits = 32 hex chars.
    return f"{stamp:016x}{int.from_bytes(os.urandom(8), 'big'):016x}"
