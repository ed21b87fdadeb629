"""Entity rows as Arrow, from whatever the caller holds (no database, no DuckDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strata.core.arrow import table_of
from strata.features.models import entity_rows_error

if TYPE_CHECKING:
    import pyarrow as pa


def as_arrow(obj: Any) -> pa.Table:
    """Entity rows as an Arrow table: from pandas, polars, Arrow or a list of dicts."""
    table = table_of(obj)
    if table is None:
        raise entity_rows_error(obj)
    return table
