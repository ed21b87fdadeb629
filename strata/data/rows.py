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


def spool_rows(rows: list[dict[str, Any]] | bytes | str, path: str) -> int:
    """Write ``rows`` as JSON Lines to ``path``; returns the number of lines written."""
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
                        out.write(line.rstrip(b"\r") + b"\n")
                        count += 1
                return count
        if not isinstance(rows, list):
            raise InvalidInput(
                "Pushed rows must be a JSON array of objects or NDJSON (one object per line), "
                f"got {type(rows).__name__}",
                details={"field": "rows"},
            )
        for item in rows:
            out.write(orjson.dumps(item) + b"\n")
            count += 1
    return count


def rows_reader(rows: list[dict[str, Any]] | bytes | str, workdir: str) -> Reader:
    path = os.path.join(workdir, "pushed.jsonl")
    if spool_rows(rows, path) == 0:
        raise InvalidInput("No rows were pushed: the body is empty", details={"field": "rows"})
    reader = file_reader(path, format="jsonl", label="push")
    reader.info = {"kind": "push"}
    return reader
