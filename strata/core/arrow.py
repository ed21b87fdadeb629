"""In-memory tabular data as Arrow: the one dispatch over what a caller may hand over.

pandas DataFrames, Arrow tables, record batches and record batch readers, and any object
exporting an Arrow C stream (``__arrow_c_stream__``: Polars, DuckDB relations, ...). Used by
the embedded ingest (which streams the result into a version) and by remote clients (which
write it to a Parquet file and upload that), so both accept and refuse the same things with
the same messages. pyarrow and pandas are imported when called, not with this module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class ArrowData:
    """``obj`` as Arrow: a whole ``table``, or a ``stream`` of batches (read once)."""

    #: What the caller gave, for messages and the recorded source ("pandas DataFrame", ...).
    kind: str
    table: pa.Table | None = None
    stream: pa.RecordBatchReader | None = None

    @property
    def schema(self) -> pa.Schema:
        source = self.table if self.table is not None else self.stream
        assert source is not None
        return source.schema


def as_arrow_data(obj: Any) -> ArrowData | None:
    """``obj`` as :class:`ArrowData`, or None when it is no known in-memory type.

    InvalidInput when a DataFrame does not convert (a column mixing types) or a table has
    no columns."""
    import pyarrow as pa

    table: pa.Table | None = None
    pd = sys.modules.get("pandas")  # not imported: obj cannot be a DataFrame
    if pd is not None and isinstance(obj, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(obj, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(
                f"The DataFrame does not convert to Arrow: {exc} (give the column one type)"
            ) from None
        kind = "pandas DataFrame"
    elif isinstance(obj, pa.Table):
        table, kind = obj, "Arrow table"
    elif isinstance(obj, pa.RecordBatch):
        table, kind = pa.Table.from_batches([obj]), "Arrow record batch"
    elif isinstance(obj, pa.RecordBatchReader):
        return ArrowData("Arrow stream", stream=obj)
    elif hasattr(obj, "__arrow_c_stream__"):
        return ArrowData(type(obj).__name__, stream=pa.RecordBatchReader.from_stream(obj))
    else:
        return None
    if table.num_columns == 0:
        raise InvalidInput(f"The {kind} has no columns: nothing to ingest")
    return ArrowData(kind, table=table)


def table_of(obj: Any) -> pa.Table | None:
    """``obj`` as one Arrow table (rows given as a list of dicts too; a stream is read
    whole), or None when it is no known tabular type. For small inputs such as entity rows."""
    import pyarrow as pa

    if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
        return pa.Table.from_pylist(obj)
    if type(obj).__module__.split(".")[0] == "polars" and hasattr(obj, "to_arrow"):
        table: pa.Table = obj.to_arrow()
        return table
    data = as_arrow_data(obj)
    if data is None:
        return None
    if data.table is not None:
        return data.table
    assert data.stream is not None
    return data.stream.read_all()
