"""Ids: opaque, time-sortable, unique (also across threads and processes)."""

from __future__ import annotations

import re
import threading
import time

from strata.core.ids import new_id

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_shape() -> None:
    assert HEX32.match(new_id())


def test_sorted_in_creation_order_and_unique() -> None:
    ids = [new_id() for _ in range(20_000)]  # many within one millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_sorts_by_time_across_milliseconds() -> None:
    first = new_id()
    time.sleep(0.005)
    second = new_id()
    assert first < second
    # the first 12 hex digits are the epoch milliseconds
    stamp_ms = int(second[:16], 16) >> 16
    assert abs(stamp_ms - time.time() * 1000) < 5_000


def test_unique_across_threads() -> None:
    out: list[list[str]] = []

    def work() -> None:
        out.append([new_id() for _ in range(2_000)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for chunk in out for i in chunk]
    assert len(set(flat)) == 8_000
    for chunk in out:
        assert chunk == sorted(chunk)
