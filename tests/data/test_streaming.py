"""Stream ingestion: Kafka (Tansu) and Redis Streams appended to datasets in micro-batches.

The crash tests run ``strata data consume`` in a subprocess, SIGKILL it mid-stream, restart it
and check that every record is in the dataset exactly once. Positions live in the metadata
DB with the versions; the brokers' own commits only follow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from brokers import create_topic, produce, xadd
from typer.testing import CliRunner

from strata.backends.streams import StreamRecord, open_source
from strata.backends.streams.kafka import KafkaSource
from strata.cli.main import app
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound
from strata.data.embedded import EmbeddedData
from strata.data.streaming import consume_uri, decode, infer_schema, stored_positions, to_table

TOTAL = 5000


def records(n: int, start: int = 0) -> list[bytes]:
    return [json.dumps({"id": i, "v": i * 0.5, "s": f"r{i}"}).encode() for i in range(start, n)]


def ids(data: EmbeddedData, name: str) -> list[int]:
    return sorted(data.read_arrow(name, columns=["id"]).column("id").to_pylist())


# -- decoding (no broker) ---------------------------------------------------------------------
def rec(value: bytes | None, offset: int = 0, problem: str | None = None) -> StreamRecord:
    return StreamRecord("0", offset, value, problem=problem)


def test_decode_splits_objects_from_malformed_records() -> None:
    docs, bad = decode(
        [
            rec(b'{"a": 1}'),
            rec(b"{oops", 1),
            rec(b"[1, 2]", 2),
            rec(None, 3),
            rec(b"\xff\xfe", 4),
            rec(b"x", 5, problem="entry has no field 'data'"),
        ]
    )
    assert [d for _, d in docs] == [{"a": 1}]
    reasons = [reason for _, reason in bad]
    assert reasons[0].startswith("invalid JSON") and reasons[3].startswith("invalid JSON")
    assert reasons[1] == "not a JSON object (found list)"
    assert reasons[2] == "empty record: no value (a tombstone)"
    assert reasons[4] == "entry has no field 'data'"
    assert [r.offset for r, _ in bad] == [1, 2, 3, 4, 5]


def test_infer_schema_and_fit_records_to_it() -> None:
    docs = [{"a": 1, "b": None, "t": []}, {"a": 2.5, "c": "x"}, {"a": "text"}]
    schema = infer_schema(docs)
    assert schema == pa.schema(
        [("a", pa.float64()), ("b", pa.string()), ("t", pa.list_(pa.string())), ("c", pa.string())]
    )
    assert infer_schema([{"big": 2**70}]) is None and infer_schema([{}]) is None
    pairs = [(rec(b"", i), d) for i, d in enumerate([*docs, {"zz": 1}])]
    table, bad = to_table(pairs, schema)
    assert table.column("a").to_pylist() == [1.0, 2.5] and table.num_rows == 2
    assert [(r.offset, why.split(":")[0]) for r, why in bad] == [
        (2, "field 'a'"),
        (3, "field 'zz' is not a column of the dataset (columns"),
    ]
    assert 'expected double, got str "text"' in bad[0][1]
    ts = pa.schema([("at", pa.timestamp("ms", tz="UTC"))])
    table, bad = to_table([(rec(b""), {"at": "2024-05-01T10:00:00Z"})], ts)
    assert bad == [] and table.column("at")[0].as_py().isoformat() == "2024-05-01T10:00:00+00:00"


# -- crash: SIGKILL mid-stream, restart, exactly once -----------------------------------------
def consumer(settings: Settings, uri: str, name: str, *extra: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "STRATA_HOME": str(settings.home),
        "STRATA_DB_URI": settings.db_uri,
        "STRATA_ARTIFACT_URI": settings.artifact_uri,
    }
    args = ["--name", name, "--batch-size", "150", "--batch-seconds", "0.3", "--json", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "strata.cli.main", "data", "consume", uri, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def crash_and_resume(data: EmbeddedData, uri: str, name: str, key: str) -> dict[str, Any]:
    first = consumer(data.backends.settings, uri, name)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert first.poll() is None, first.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "the consumer stored no 3 batches in 60 s"
            try:
                if len(data.list_versions(name)) >= 3:
                    break
            except NotFound:
                pass
            time.sleep(0.01)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    stored = data.stream_position(name, key)
    assert stored is not None
    at_kill = data.get_version(name).rows
    assert 300 <= at_kill < TOTAL, "the kill came after the stream was drained"
    second = consumer(data.backends.settings, uri, name, "--stop-when-idle", "1.5")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(out)
    assert result["resumed_from"] == stored.offsets and result["stopped"] == "idle"
    assert ids(data, name) == list(range(TOTAL))  # nothing lost, nothing twice
    latest = data.get_version(name)
    assert latest.rows == TOTAL and latest.quarantined_rows == 0
    assert data.stream_position(name, key).offsets == result["offsets"]  # type: ignore[union-attr]
    assert at_kill + result["rows"] == TOTAL
    return result


def test_kafka_sigkill_mid_stream_loses_and_duplicates_nothing(
    lite: EmbeddedData, kafka: str, topic: str
) -> None:
    """On SQLite (the Redis crash test runs on PostgreSQL: each DB sees one kill)."""
    produce(kafka, topic, list(records(TOTAL)), 3)
    result = crash_and_resume(lite, f"kafka://{kafka}/{topic}", "orders", f"kafka:{topic}")
    assert sum(result["offsets"].values()) == TOTAL
    with open_source(f"kafka://{kafka}/{topic}", group="strata.orders") as src:
        assert isinstance(src, KafkaSource)
        src.start(None)
        assert src.committed() == result["offsets"]  # the broker followed the DB


def test_redis_sigkill_mid_stream_loses_and_duplicates_nothing(
    pg_data: EmbeddedData, stream: tuple[str, str]
) -> None:
    """On PostgreSQL: the kill also drops a connection that may be mid-transaction."""
    import redis

    url, name = stream
    xadd(url, name, records(TOTAL))
    result = crash_and_resume(pg_data, f"{url}?stream={name}", "events", f"redis:{name}")
    client = redis.Redis.from_url(url)
    (group,) = client.xinfo_groups(name)
    last = client.xrevrange(name, count=1)[0][0].decode()
    client.close()
    assert result["offsets"] == {name: last}
    assert group["name"] == b"strata.events" and group["pending"] == 0


# -- resume: the DB's positions, not the broker's ----------------------------------------------
def test_kafka_resume_uses_stored_positions(data: EmbeddedData, kafka: str, topic: str) -> None:
    uri = f"kafka://{kafka}/{topic}"
    produce(kafka, topic, records(300), 3)
    first = consume_uri(data, uri, "ev", batch_size=120, batch_seconds=2, max_batches=1)
    assert (first.batches, first.rows, first.stopped) == (1, 120, "max_batches")
    stored = stored_positions(data, "ev", f"kafka:{topic}")
    assert stored == first.offsets and sum(stored.values()) == 120
    # a crash after the DB commit, before the broker's: the group is still at the start
    with open_source(uri, group="strata.ev") as src:
        src.start(None)
        src.commit({"0": 0, "1": 0, "2": 0})
    second = consume_uri(data, uri, "ev", batch_size=1000, batch_seconds=0.5, idle_seconds=1)
    assert second.resumed_from == stored and second.rows == 180
    assert ids(data, "ev") == list(range(300))
    # the broker ahead of the DB (committed by someone else): the DB still decides
    produce(kafka, topic, records(330, 300), 3)
    with open_source(uri, group="strata.ev") as src:
        src.start(None)
        src.commit({"0": 110, "1": 110, "2": 110})
    third = consume_uri(data, uri, "ev", batch_size=1000, batch_seconds=0.5, idle_seconds=1)
    assert third.rows == 30 and ids(data, "ev") == list(range(330))
    versions = data.list_versions("ev")
    assert versions[0].rows == 120 and versions[-1].rows == 330
    assert versions[-1].source["offsets"] == {"0": 110, "1": 110, "2": 110}
    assert versions[-1].parents == [versions[-2].ref]


def test_redis_resume_skips_what_the_db_holds(data: EmbeddedData, stream: tuple[str, str]) -> None:
    import redis

    url, name = stream
    uri = f"{url}?stream={name}"
    xadd(url, name, records(50))
    first = consume_uri(data, uri, "ev", batch_size=20, batch_seconds=2, max_batches=2)
    assert first.rows == 40
    # the crash: entries delivered again and never acknowledged, the group moved past them
    client = redis.Redis.from_url(url)
    client.xgroup_setid(name, "strata.ev", "0")
    client.xreadgroup("strata.ev", "strata", {name: ">"})
    assert client.xpending(name, "strata.ev")["pending"] == 50
    second = consume_uri(data, uri, "ev", batch_size=100, batch_seconds=0.3, idle_seconds=0.8)
    assert second.resumed_from == first.offsets and second.rows == 10
    assert ids(data, "ev") == list(range(50))
    assert client.xpending(name, "strata.ev")["pending"] == 0
    client.close()


# -- malformed records, schemas, gates ---------------------------------------------------------
def test_malformed_records_go_to_quarantine_with_offset_and_reason(
    lite: EmbeddedData, kafka: str
) -> None:
    # One partition: the schema is inferred from the batch in arrival order, which only a
    # single partition makes deterministic.
    topic = f"t-{uuid.uuid4().hex[:10]}"
    create_topic(kafka, topic, 1)
    values: list[bytes | None] = [
        b'{"id": 0, "v": 1.5}',  # o0
        b"{not json",  # o1
        b'{"id": 2, "v": 2.5}',  # o2
        b'"a string"',  # o3
        None,  # o4: a tombstone
        b'{"id": "five", "v": 1}',  # o5: wrong type
        b'{"id": 6, "extra": true}',  # o6: unknown field
        b'{"id": 7}',  # o7: missing field → null
    ]
    produce(kafka, topic, values, 1)
    result = consume_uri(
        lite, f"kafka://{kafka}/{topic}", "ev", batch_size=100, batch_seconds=1, max_batches=1
    )
    assert (result.records, result.rows, result.quarantined) == (8, 3, 5)
    version = lite.get_version("ev")
    assert version.quarantined_rows == 5 and version.quarantine is not None
    got = sorted(lite.read_arrow(version.quarantine).to_pylist(), key=lambda r: r["_source"])
    rows = [(r["_source"], r["_reason"], r["_raw"]) for r in got]
    assert [s for s, _, _ in rows] == [
        f"kafka:{topic} partition 0 offset {o}" for o in (1, 3, 4, 5, 6)
    ]
    assert rows[0][1].startswith("invalid JSON") and rows[0][2] == "{not json"
    assert rows[1][1] == "not a JSON object (found str)" and rows[1][2] == '"a string"'
    assert rows[2][1] == "empty record: no value (a tombstone)" and rows[2][2] is None
    assert rows[3][1].startswith("field 'id': expected int64, got str \"five\"")
    assert rows[4][1].startswith("field 'extra' is not a column of the dataset")
    good = lite.read_pandas("ev").sort_values("id")
    assert good["id"].tolist() == [0, 2, 7] and good["v"].isna().tolist() == [False, False, True]


def test_redis_entries_without_the_field_are_quarantined(
    lite: EmbeddedData, stream: tuple[str, str]
) -> None:
    import redis

    url, name = stream
    client = redis.Redis.from_url(url)
    first = client.xadd(name, {"data": b'{"id": 1}'}).decode()
    missing = client.xadd(name, {"payload": b'{"id": 2}'}).decode()
    client.close()
    result = consume_uri(lite, f"{url}?stream={name}", "ev", batch_seconds=0.5, max_batches=1)
    assert (result.rows, result.quarantined, result.offsets) == (1, 1, {name: missing})
    q = lite.read_pandas(lite.get_version("ev").quarantine or "")
    assert q["_source"].tolist() == [f"redis:{name} id {missing}"]
    assert q["_reason"].tolist() == ["entry has no field 'data' (fields: 'payload')"]
    assert first < missing


def test_without_a_schema_malformed_records_wait_uncommitted(
    lite: EmbeddedData, kafka: str, topic: str
) -> None:
    uri = f"kafka://{kafka}/{topic}"
    produce(kafka, topic, [b"nope", b"[]", b"7"], 3)
    held = consume_uri(lite, uri, "ev", batch_seconds=0.3, idle_seconds=0.8)
    assert (held.batches, held.uncommitted, held.stopped) == (0, 3, "idle")
    with pytest.raises(NotFound):
        lite.get_dataset("ev")
    produce(kafka, topic, [b'{"id": 1}'], 3)
    done = consume_uri(lite, uri, "ev", batch_seconds=0.5, idle_seconds=1)
    assert (done.rows, done.quarantined, done.uncommitted) == (1, 3, 0)
    assert done.offsets == {"0": 2, "1": 1, "2": 1}


def test_explicit_schema_and_suite_gate(lite: EmbeddedData, kafka: str, topic: str) -> None:
    values = [
        json.dumps({"id": i, "at": f"2024-05-0{1 + i % 3}T00:00:00Z", "n": None}).encode()
        for i in range(12)
    ]
    produce(kafka, topic, values, 3)
    with pytest.raises(InvalidInput, match="Unknown type 'integer' for column 'id'"):
        consume_uri(lite, f"kafka://{kafka}/{topic}", "ev", schema={"id": "integer"})
    suite = {
        "expectations": [{"expect_column_values_to_be_between": {"column": "id", "max_value": 9}}]
    }
    result = consume_uri(
        lite,
        f"kafka://{kafka}/{topic}",
        "ev",
        schema=pa.schema(
            [("id", pa.int64()), ("at", pa.timestamp("ms", "UTC")), ("n", pa.int32())]
        ),
        suite=suite,
        on_fail="quarantine",
        batch_seconds=1,
        max_batches=1,
    )
    assert (result.rows, result.quarantined) == (10, 2)
    version = lite.get_version("ev")
    assert [(c.name, c.type) for c in version.columns] == [
        ("id", "int64"),
        ("at", "timestamp[ms, tz=UTC]"),
        ("n", "int32"),
    ]


# -- CLI --------------------------------------------------------------------------------------
def test_cli_consume_shows_a_summary_and_refuses_remote(
    kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    produce(kafka, topic, records(10), 3)
    runner = CliRunner()
    uri = f"kafka://{kafka}/{topic}"
    args = ["data", "consume", uri, "--name", "ev", "--batch-seconds", "1", "--max-batches", "1"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    said = " ".join(done.stdout.split())
    assert "1 batch, 10 rows into ev@" in said and "(0 quarantined, 0 already stored)" in said
    bad = runner.invoke(app, ["data", "consume", "nats://x/y", "--name", "ev"])
    assert isinstance(bad.exception, InvalidInput) and "unknown scheme" in bad.exception.message
    monkeypatch.setenv("STRATA_URI", "http://127.0.0.1:9")
    refused = runner.invoke(app, args)
    assert isinstance(refused.exception, InvalidInput)
    assert "unset STRATA_URI" in refused.exception.message


def test_long_streams_are_compacted_with_offsets_kept(
    lite: EmbeddedData, kafka: str, topic: str
) -> None:
    """Each batch appends a part; past ``compact_after`` parts the consumer rewrites the
    version into canonical parts, same rows in the same order, same offsets."""
    uri = f"kafka://{kafka}/{topic}"
    produce(kafka, topic, records(90), 3)
    result = consume_uri(
        lite, uri, "ev", batch_size=10, batch_seconds=0.5, idle_seconds=1, compact_after=3
    )
    assert result.rows == 90 and result.compactions >= 2
    latest = lite.get_version("ev@latest")
    assert latest.num_files <= 3 and latest.rows == 90
    assert ids(lite, "ev") == list(range(90))
    assert stored_positions(lite, "ev", f"kafka:{topic}") == result.offsets
    produce(kafka, topic, records(100, 90), 3)
    more = consume_uri(lite, uri, "ev", batch_size=50, batch_seconds=0.5, idle_seconds=1)
    assert more.rows == 10 and ids(lite, "ev") == list(range(100))


def test_compaction_refuses_a_changed_part(lite: EmbeddedData, kafka: str, topic: str) -> None:
    """A part changed on disk (same size, other bytes) is a DigestMismatch when a compaction
    reads it, not rows laundered into a fresh, correctly-digested version."""
    import os

    from strata.core.errors import DigestMismatch
    from strata.data.streaming import StreamTarget, compact

    produce(kafka, topic, records(30), 3)
    uri = f"kafka://{kafka}/{topic}"
    result = consume_uri(lite, uri, "ev", batch_size=10, batch_seconds=0.5, max_batches=3)
    latest = lite.get_version("ev")
    assert latest.num_files == 3 and result.compactions == 0
    path = lite.vfiles.location(lite.files(latest.ref)[1].path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = StreamTarget(lite, lite.committer, lite.arrow_dataset)
    with pytest.raises(DigestMismatch):
        compact(target, latest.ref, f"kafka:{topic}", result.offsets)
    assert [v.id for v in lite.list_versions("ev")][-1] == latest.id  # nothing published
