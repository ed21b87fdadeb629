"""Values crossing from DuckDB into reports: JSON-native forms and ordered comparisons."""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (naive values are taken as UTC, as everywhere in Strata)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def start_of_day(value: dt.date | dt.datetime) -> dt.datetime:
    """A datetime unchanged; a date as its midnight (naive, i.e. UTC by convention)."""
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time())


def jsonable(value: Any) -> Any:
    """A JSON-native form of a value DuckDB returned.

    Datetimes become ISO 8601 text in UTC (naive ones are taken as UTC), dates and times ISO
    text, decimals floats, NaN/inf None, intervals seconds, bytes base64, nested values
    recursively converted.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, dt.datetime):
        return as_utc(value).isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


def _coerce(value: Any, bound: Any) -> tuple[Any, Any]:
    """Bring an observed value and a bound to comparable types (dates given as ISO text)."""
    if isinstance(value, dt.datetime):
        if isinstance(bound, str):
            bound = dt.datetime.fromisoformat(bound)
        if isinstance(bound, dt.datetime):
            return as_utc(value), as_utc(bound)
        if isinstance(bound, dt.date):
            return as_utc(value), as_utc(dt.datetime.combine(bound, dt.time()))
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        if isinstance(bound, str):
            bound = dt.date.fromisoformat(bound[:10]) if len(bound) <= 10 else bound
            if isinstance(bound, str):
                return as_utc(dt.datetime.combine(value, dt.time())), as_utc(
                    dt.datetime.fromisoformat(bound)
                )
        if isinstance(bound, dt.datetime):
            return as_utc(dt.datetime.combine(value, dt.time())), as_utc(bound)
    return value, bound


def within(
    value: Any, lo: Any, hi: Any, *, strict_min: bool = False, strict_max: bool = False
) -> bool:
    """GE's ``_validate_metric_value_between``: None bounds are open; None values fail.

    Raises TypeError/ValueError when the value and a bound cannot be compared.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if lo is not None:
        v, b = _coerce(value, lo)
        if not (v > b if strict_min else v >= b):
            return False
    if hi is not None:
        v, b = _coerce(value, hi)
        if not (v < b if strict_max else v <= b):
            return False
    return True


def column_family(duckdb_type: str) -> str:
    """The family of a column type as DuckDB's DESCRIBE spells it."""
    t = duckdb_type.strip().upper()
    if t.startswith("DECIMAL("):
        return t.replace(" ", "")
    if t.startswith("ENUM("):
        return "ENUM"
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return "TIMESTAMPTZ"
    if t in ("TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP"):
        return "TIMESTAMP"
    return t
