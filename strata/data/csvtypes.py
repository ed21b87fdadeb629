"""Declared CSV column types (``--schema col=type,...``): parsing the names people write, and
the schema of a first block whose declared types do not convert."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from strata.core.errors import InvalidInput

_TYPE_ALIASES = {
    "int": "int64",
    "integer": "int64",
    "float": "float64",
    "text": "string",
    "str": "string",
    "date": "date32",
    "timestamp": "timestamp[us]",
}


def parse_types(column_types: dict[str, str] | None) -> dict[str, pa.DataType]:
    out: dict[str, pa.DataType] = {}
    for name, spec in (column_types or {}).items():
        spec = str(spec).strip()
        try:
            if spec.lower() == "timestamptz":
                out[name] = pa.timestamp("us", tz="UTC")
            else:
                out[name] = pa.type_for_alias(_TYPE_ALIASES.get(spec.lower(), spec))
        except ValueError:
            raise InvalidInput(
                f"Unknown type {spec!r} for column {name!r}: use int, float, string, bool, date, "
                "timestamp, timestamptz or an Arrow type name such as int32, float32, "
                "timestamp[ms]",
                details={"column": name},
            ) from None
    return out


def check_declared(schema: pa.Schema, types: dict[str, pa.DataType], shown: str) -> None:
    unknown = sorted(set(types) - set(schema.names))
    if unknown:
        raise InvalidInput(
            f"Column types name {', '.join(map(repr, unknown))}, which {shown} does not have; "
            f"its columns: {', '.join(schema.names)}",
            details={"field": "column_types", "columns": unknown},
        )


def declared_schema(
    open_file: Callable[[], Any],
    block_size: int,
    parse: pacsv.ParseOptions,
    convert: pacsv.ConvertOptions,
    types: dict[str, pa.DataType],
) -> pa.Schema | None:
    """The first block's schema with the declared types in place (None if it cannot be read
    even with the declared columns as text)."""
    as_text = pacsv.ConvertOptions(
        column_types={**convert.column_types, **dict.fromkeys(types, pa.string())},
        strings_can_be_null=True,
    )
    f = open_file()
    try:
        inferred = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block_size),
            parse_options=parse,
            convert_options=as_text,
        ).schema
    except pa.ArrowInvalid:
        return None
    finally:
        f.close()
    return pa.schema([pa.field(n, types.get(n, inferred.field(n).type)) for n in inferred.names])
