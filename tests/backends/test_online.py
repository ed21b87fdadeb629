"""The online-store conformance suite: every backend (SQLite, the real Redis) passes the same
tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_service

from strata.backends.online.base import OnlineStore, open_online_store
from strata.core.errors import InvalidInput, Unavailable


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        s = open_online_store("", str(tmp_path))
    else:
        s = open_online_store(need_service("STRATA_TEST_REDIS_URL", "Redis"), str(tmp_path))
    yield s
    s.close()


@pytest.fixture
def view() -> Iterator[str]:
    yield f"v{uuid.uuid4().hex[:10]}"


def test_write_read_in_order(store: OnlineStore, view: str) -> None:
    keys = [f"k{i}".encode() for i in range(1200)]  # more than one read chunk / write batch
    assert (
        store.write(view, keys, list(range(1200)), [f"val{i}".encode() for i in range(1200)])
        == 1200
    )
    wanted = [b"k5", b"missing", b"k1199", b"k0", b"k5"]
    got = store.read(view, wanted)
    assert [(e.ts_us, e.value) if e else None for e in got] == [
        (5, b"val5"),
        None,
        (1199, b"val1199"),
        (0, b"val0"),
        (5, b"val5"),
    ]
    assert store.read(view, [b"k7"])[0] is not None  # the single-key path
    assert store.read(f"{view}x", [b"k5"]) == [None]  # views are separate
    store.delete_view(view)


def test_newer_event_time_wins(store: OnlineStore, view: str) -> None:
    store.write(view, [b"a"], [100], [b"new"])
    store.write(view, [b"a"], [50], [b"late"])  # an older value arriving late
    assert store.read(view, [b"a"])[0].value == b"new"  # type: ignore[union-attr]
    store.write(view, [b"a"], [100], [b"same-time"])  # same time: the last write wins
    assert store.read(view, [b"a"])[0].value == b"same-time"  # type: ignore[union-attr]
    store.write(view, [b"a"], [101], [b"newer"])
    entry = store.read(view, [b"a"])[0]
    assert entry is not None and (entry.ts_us, entry.value) == (101, b"newer")
    store.delete_view(view)


def test_binary_values_and_keys(store: OnlineStore, view: str) -> None:
    key, value = "é\x1fx".encode(), bytes(range(256))
    store.write(view, [key], [1], [value])
    assert store.read(view, [key])[0].value == value  # type: ignore[union-attr]
    store.delete_view(view)


def test_delete_view(store: OnlineStore, view: str) -> None:
    store.write(view, [b"a", b"b"], [1, 1], [b"1", b"2"])
    store.write(f"{view}_other", [b"a"], [1], [b"keep"])
    assert store.delete_view(view) == 2
    assert store.read(view, [b"a", b"b"]) == [None, None]
    assert store.read(f"{view}_other", [b"a"])[0] is not None
    store.delete_view(f"{view}_other")


def test_concurrent_writers_keep_the_newest(store: OnlineStore, view: str) -> None:
    def writer(offset: int) -> None:
        for ts in range(offset, 200, 4):
            store.write(view, [b"hot"], [ts], [str(ts).encode()])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry = store.read(view, [b"hot"])[0]
    assert entry is not None and (entry.ts_us, entry.value) == (199, b"199")
    store.delete_view(view)


def test_uri_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="online_uri"):
        open_online_store("memcached://x", str(tmp_path))
    down = open_online_store("redis://127.0.0.1:1/0", str(tmp_path))  # nothing listens there
    with pytest.raises(Unavailable, match="unreachable") as info:
        down.read("v", [b"a"])
    assert "127.0.0.1:1" in info.value.message
