"""Rows pushed over HTTP (or handed over as dicts): a JSON array or NDJSON → a JSONL reader.

The rows are spooled to a JSON Lines file in the ingest's work directory and read by the
JSON Lines reader, so each row is checked on its own: a row that is not an object or does not
fit the schema goes to quarantine with its number (the array index + 1, or the NDJSON line).
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from strata.core.errors import InvalidInput
from strata.data.ingest import Reader
from strata.data.readers import file_reader


def _check_flat(item: Any, number: int) -> None:
    """Pushed rows are flat records: a nested object or array is a 400 naming the row and
    the column (a file upload reads nested JSON Lines; pushed rows do not)."""
    if not isinstance(item, dict):
        return  # not an object at all: quarantined with its number by the reader
    for key, value in item.items():
        if isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "an array"
            raise InvalidInput(
                f"Pushed row {number}, column {key!r}: holds {kind}; pushed rows take flat "
                "values only (string, number, boolean or null)",
                details={"field": f"rows[{number - 1}].{key}", "row": number, "column": key},
            )


def spool_rows(rows: list[dict[str, Any]] | bytes | str, path: str) -> int:
    """Write ``rows`` as JSON Lines to ``path``; returns the number of lines written.

    Raises InvalidInput when a row holds a nested object or array."""
    if isinstance(rows, str):
        rows = rows.encode()
    count = 0
    with open(path, "wb") as out:
        if isinstance(rows, bytes | bytearray | memoryview):
            data = bytes(rows)
            head = data.lstrip()[:1]
            if head == b"[":
                try:
                    items = orjson.loads(data)
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput(f"The pushed body is not valid JSON: {exc}") from None
                rows = items
            else:
                for line in data.splitlines():
                    if line.strip():
                        count += 1
                        if b"{" in line[1:] or b"[" in line:  # maybe nested: look closer
                            try:
                                _check_flat(orjson.loads(line), count)
                            except orjson.JSONDecodeError:
                                pass  # malformed: quarantined with its number by the reader
                        out.write(line.rstrip(b"\r") + b"\n")
                return count
        if not isinstance(rows, list):
            raise InvalidInput(
                "Pushed rows must be a JSON array of objects or NDJSON (one object per line), "
                f"got {type(rows).__name__}",
                details={"field": "rows"},
            )
        for item in rows:
            count += 1
            _check_flat(item, count)
            out.write(orjson.dumps(item) + b"\n")
    return count


def rows_reader(rows: list[dict[str, Any]] | bytes | str, workdir: str) -> Reader:
    path = os.path.join(workdir, "pushed.jsonl")
    if spool_rows(rows, path) == 0:
        raise InvalidInput("No rows were pushed: the body is empty", details={"field": "rows"})
    reader = file_reader(path, format="jsonl", label="push")
    reader.info = {"kind": "push"}
    return reader
