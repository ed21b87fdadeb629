"""The prediction log writer: the agreed layout and columns, bounded queue, drops counted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from strata.backends.artifacts import ArtifactStore
from strata.serving.models import PredictionLogConfig
from strata.serving.predlog import PredictionLog

from .conftest import GatedStore


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "predictions").rglob("*.parquet"))


def _record(plog: PredictionLog, request_id: str, n: int, **kw: Any) -> bool:
    inputs = {
        "dep_delay": np.arange(n, dtype=np.float64),
        "carrier": np.array(["UA", "AA"] * (n // 2) + ["DL"] * (n % 2), dtype=object),
    }
    defaults: dict[str, Any] = {
        "model": "flights",
        "version": "3",
        "endpoint": "flights",
        "path": "primary",
        "latency_ms": 1.5,
    }
    return plog.record(
        request_id=request_id,
        inputs=inputs,
        prediction=np.arange(n) % 2,
        proba=np.column_stack([np.full(n, 0.25), np.full(n, 0.75)]),
        **(defaults | kw),
    )


def test_layout_columns_and_types_as_agreed(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "art"))
    plog = PredictionLog(store)
    assert _record(plog, "req-a", 3, entity_key="N123")
    assert _record(plog, "req-b", 2, path="canary")
    assert plog.flush() == 5
    files = _files(tmp_path / "art")
    assert len(files) == 1
    assert files[0].startswith("predictions/model=flights/date=")
    assert files[0].endswith(".parquet")
    local = tmp_path / "art" / files[0]
    schema = pq.read_schema(local)
    assert str(schema.field("request_id").type) == "string"
    assert str(schema.field("row").type) == "int32"
    assert str(schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("latency_ms").type) == "double"
    assert str(schema.field("entity_key").type) == "string"
    # The writer marks a column without nulls as required (cheaper to write): the agreed
    # layout is the names and types, whatever the nullability.
    inputs = schema.field("inputs").type
    assert [(f.name, str(f.type)) for f in inputs] == [
        ("dep_delay", "double"),
        ("carrier", "string"),
    ]
    outputs = schema.field("outputs").type
    assert [outputs.field(i).name for i in range(outputs.num_fields)] == ["prediction", "proba"]
    assert outputs.field("prediction").type == pa.int64()
    assert outputs.field("proba").type.equals(pa.list_(pa.float64()), check_metadata=False) or (
        pa.types.is_list(outputs.field("proba").type)
        and outputs.field("proba").type.value_type == pa.float64()
    )
    glob = str(tmp_path / "art" / "predictions" / "model=flights" / "*" / "*.parquet")
    rows = duckdb.sql(
        f"select request_id, row, model, version, endpoint, path, entity_key, "
        f"inputs.dep_delay, inputs.carrier, outputs.prediction, outputs.proba, date "
        f"from read_parquet('{glob}', hive_partitioning=true, union_by_name=true) "
        f"order by request_id, row"
    ).fetchall()
    assert [r[:2] for r in rows] == [
        ("req-a", 0),
        ("req-a", 1),
        ("req-a", 2),
        ("req-b", 0),
        ("req-b", 1),
    ]
    assert {r[5] for r in rows} == {"primary", "canary"}
    assert rows[0][6] == "N123" and rows[3][6] is None
    assert [r[7] for r in rows] == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert [r[8] for r in rows] == ["UA", "AA", "DL", "UA", "AA"]
    assert rows[1][9] == 1 and rows[1][10] == [0.25, 0.75]
    assert str(rows[0][11]) == time.strftime("%Y-%m-%d", time.gmtime())


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    plog = PredictionLog(ArtifactStore(str(tmp_path)), PredictionLogConfig(max_rows=10))
    assert _record(plog, "a", 8)
    assert not _record(plog, "b", 3)
    assert plog.dropped_rows == 3
    assert plog.flush() == 8
    assert _record(plog, "c", 3)  # room again after the flush


def test_record_never_waits_for_a_slow_write(tmp_path: Path) -> None:
    slow = GatedStore(ArtifactStore(str(tmp_path)), wait_s=10)
    plog = PredictionLog(slow, PredictionLogConfig(flush_rows=1, flush_seconds=0.05)).start()
    try:
        _record(plog, "first", 2)
        assert slow.entered.wait(5)  # the writer is stuck in put_bytes
        start = time.perf_counter()
        for i in range(200):
            _record(plog, f"r{i}", 1)
        assert time.perf_counter() - start < 0.5
    finally:
        slow.gate.set()
        plog.close()
    assert plog.written_rows == 202 and plog.dropped_rows == 0


class _BrokenStore:
    def put_bytes(self, path: str, data: bytes) -> Any:
        raise OSError("disk full")


def test_failed_write_counts_its_rows_as_dropped() -> None:
    plog = PredictionLog(_BrokenStore())
    _record(plog, "a", 4)
    assert plog.flush() == 0
    assert plog.dropped_rows == 4 and plog.failed_writes == 1


def test_versions_and_models_get_their_own_files(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    plog = PredictionLog(store)
    _record(plog, "a", 1)
    _record(plog, "b", 1, version="4")
    _record(plog, "c", 1, model="other")
    plog.flush()
    paths = sorted(f.split("/")[1] for f in _files(tmp_path))
    assert paths == ["model=flights", "model=flights", "model=other"]


def test_queued_requests_are_invisible_to_the_cyclic_gc(tmp_path: Path) -> None:
    """A queue of many requests must not lengthen Python's full collections (the serving
    p99): each queued request is a plain tuple of untracked values."""
    import gc

    log = PredictionLog(ArtifactStore(str(tmp_path)), PredictionLogConfig(flush_seconds=3600))
    x = np.arange(16, dtype=np.float64).reshape(2, 8)
    for i in range(100):
        log.record(
            request_id=f"r{i}",
            model="m",
            version="1",
            endpoint="m",
            path="primary",
            latency_ms=1.0,
            inputs={f"c{j}": x[:, j] for j in range(8)},
            prediction=np.array([0, 1]),
            proba=np.array([[0.2, 0.8], [0.6, 0.4]]),
        )
    gc.collect()
    gc.collect()  # a pass untracks the inner tuples, the next the entries holding them
    assert not any(gc.is_tracked(entry) for entry in log._queue)
    assert log.flush() == 200


def test_a_mixed_flush_keeps_every_row_with_its_own_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flush of requests of 1 and several rows, with and without probabilities, another
    signature, two days: sliced (2 requests, ~3 rows), grouped, every row where it
    belongs."""
    from strata.serving import predlog

    monkeypatch.setattr(predlog, "SLICE", 2)
    monkeypatch.setattr(predlog, "SLICE_ROWS", 3)
    store = ArtifactStore(str(tmp_path))
    plog = PredictionLog(store)
    day1 = 1_700_000_000 * 10**9  # 2023-11-14
    day2 = day1 + 86_400 * 10**9
    clock = iter([day1, day2, day1, day1, day1, day1])
    monkeypatch.setattr(predlog.time, "time_ns", lambda: next(clock))
    assert _record(plog, "a", 1, entity_key="k1")
    assert _record(plog, "d", 2)  # the next day, in a slice where only the day differs
    assert _record(plog, "b", 3, path="canary")
    assert plog.record(  # no probabilities (a regressor's path), another signature
        request_id="c",
        model="flights",
        version="3",
        endpoint="flights",
        path="shadow",
        latency_ms=2.5,
        inputs={"dep_delay": np.array([7.0, 8.0])},
        prediction=np.array([1, 0]),
    )
    assert _record(plog, "e", 1, version="4")
    assert _record(plog, "f", 2, entity_key="k6", latency_ms=9.0)
    assert plog.flush() == 11
    files = _files(tmp_path)
    assert len(files) == 3  # v3 day 1 (three signatures and probability shapes), v3 day 2, v4
    glob = str(tmp_path / "predictions" / "model=flights" / "*" / "*.parquet")
    got = duckdb.sql(
        f"select request_id, row, version, path, entity_key, latency_ms, inputs.dep_delay, "
        f"inputs.carrier, outputs.prediction, outputs.proba, date::varchar "
        f"from read_parquet('{glob}', hive_partitioning=true, union_by_name=true) "
        f"order by request_id, row"
    ).fetchall()
    p = [0.25, 0.75]
    d1, d2 = "2023-11-14", "2023-11-15"
    assert got == [
        ("a", 0, "3", "primary", "k1", 1.5, 0.0, "DL", 0, p, d1),
        ("b", 0, "3", "canary", None, 1.5, 0.0, "UA", 0, p, d1),
        ("b", 1, "3", "canary", None, 1.5, 1.0, "AA", 1, p, d1),
        ("b", 2, "3", "canary", None, 1.5, 2.0, "DL", 0, p, d1),
        ("c", 0, "3", "shadow", None, 2.5, 7.0, None, 1, None, d1),
        ("c", 1, "3", "shadow", None, 2.5, 8.0, None, 0, None, d1),
        ("d", 0, "3", "primary", None, 1.5, 0.0, "UA", 0, p, d2),
        ("d", 1, "3", "primary", None, 1.5, 1.0, "AA", 1, p, d2),
        ("e", 0, "4", "primary", None, 1.5, 0.0, "DL", 0, p, d1),
        ("f", 0, "3", "primary", "k6", 9.0, 0.0, "UA", 0, p, d1),
        ("f", 1, "3", "primary", "k6", 9.0, 1.0, "AA", 1, p, d1),
    ]
    assert plog.written_rows == 11 and plog.dropped_rows == 0


def test_a_request_that_cannot_be_converted_is_counted_and_the_rest_written(
    tmp_path: Path,
) -> None:
    plog = PredictionLog(ArtifactStore(str(tmp_path)))
    assert _record(plog, "good", 2)
    assert plog.record(  # an input Arrow cannot hold in one column (mixed types)
        request_id="bad",
        model="other",
        version="1",
        endpoint="other",
        path="primary",
        latency_ms=1.0,
        inputs={"x": np.array([object(), 1], dtype=object)},
        prediction=np.array([0, 1]),
    )
    assert plog.flush() == 2
    assert plog.dropped_rows == 2 and plog.failed_writes == 1
    assert len(_files(tmp_path)) == 1


def test_the_writer_slices_by_requests_and_by_rows_never_splitting_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from strata.serving import predlog

    monkeypatch.setattr(predlog, "SLICE", 4)
    monkeypatch.setattr(predlog, "SLICE_ROWS", 100)

    def ends(rows: list[int]) -> list[int]:
        return predlog._slices([(None,) * 12 + (n,) for n in rows])

    assert ends([1] * 10) == [4, 8, 10]  # 1-row requests: SLICE requests a slice
    assert ends([60] * 5) == [2, 4, 5]  # 120 rows, 120 rows, 60: about SLICE_ROWS
    assert ends([500, 1, 1]) == [1, 3]  # a large request alone, never cut
    assert ends([7]) == [1]


def test_written_cheaply_yet_read_as_agreed(tmp_path: Path) -> None:
    """The writer's shortcuts (to_table, to_parquet): a request's id and the model's strings
    dictionary-encoded as handed over, columns without nulls required (no definition
    levels), min/max only where a reader skips by them — and pyarrow still reads plain
    strings, not dictionaries."""
    plog = PredictionLog(ArtifactStore(str(tmp_path)))
    for i in range(3):
        assert _record(plog, f"req-{i}", 4)
    assert plog.flush() == 12
    (name,) = _files(tmp_path)
    parquet = pq.ParquetFile(tmp_path / name)
    chunks = {
        parquet.metadata.row_group(0).column(i).path_in_schema: parquet.metadata.row_group(
            0
        ).column(i)
        for i in range(parquet.metadata.num_columns)
    }
    levels = {
        parquet.schema.column(i).path: parquet.schema.column(i).max_definition_level
        for i in range(parquet.metadata.num_columns)
    }
    for column in ("request_id", "model", "version", "endpoint", "path"):
        assert "RLE_DICTIONARY" in chunks[column].encodings, column
    for column in ("request_id", "row", "ts", "model", "latency_ms", "inputs.dep_delay"):
        assert levels[column] == 0, column  # required
    assert levels["entity_key"] == 1  # all null here: optional
    assert [c for c, chunk in chunks.items() if chunk.is_stats_set] == ["row", "ts", "latency_ms"]
    split = [c for c, chunk in chunks.items() if "BYTE_STREAM_SPLIT" in chunk.encodings]
    assert split == ["latency_ms", "inputs.dep_delay", "outputs.proba.list.element"]  # floats
    table = parquet.read()
    assert table.schema.field("request_id").type == pa.string()
    assert table.schema.field("model").type == pa.string()
    assert table.column("request_id").to_pylist() == [
        f"req-{i}" for i in range(3) for _ in range(4)
    ]
    assert set(table.column("model").to_pylist()) == {"flights"}
    inputs = table.column("inputs").combine_chunks()
    assert inputs.field("dep_delay").to_pylist() == [0.0, 1.0, 2.0, 3.0] * 3
    read = duckdb.sql(
        f"SELECT sum(inputs.dep_delay), sum(list_sum(outputs.proba)) "
        f"FROM read_parquet('{tmp_path / name}')"
    ).fetchall()
    assert read == [(18.0, 12.0)]  # byte-stream-split floats, read back by DuckDB
