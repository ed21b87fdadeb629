"""Entity rows as Arrow, from whatever the caller holds (no database, no DuckDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa


def as_arrow(obj: Any) -> pa.Table:
    """Entity rows as an Arrow table: from pandas, polars, Arrow or a list of dicts."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
        return pa.Table.from_pylist(obj)
    module = type(obj).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(obj, preserve_index=False)
    if module == "polars":
        return obj.to_arrow()
    raise InvalidInput(
        f"Entity rows must be a pandas or polars DataFrame, an Arrow table, a list of dicts "
        f"or a dataset reference, not {type(obj).__name__}",
        details={"field": "entities"},
    )
