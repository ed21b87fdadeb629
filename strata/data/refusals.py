"""What the audit record of a refused or failed ingest or transform says.

The record names the source with secrets masked and SQL replaced by its sha256, like a
successful ingest's record (:func:`strata.data.commit.audit_source`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from strata.data.models import IngestOptions


def ingest_details(source: Any, options: IngestOptions, label: str | None) -> dict[str, Any]:
    from strata.data.commit import audit_source  # the write path: imported where used

    info: dict[str, Any] = {}
    is_sql = options.sql_url is not None or options.connection is not None
    if is_sql and isinstance(source, str):
        info["query"] = source
    elif label is not None:
        info["uri"] = label
    elif isinstance(source, str | os.PathLike):
        info["uri"] = os.fspath(source)
    else:
        info["kind"] = type(source).__name__
    if options.sql_url is not None:
        info["sql_url"] = options.sql_url
    if options.connection is not None:
        info["connection"] = options.connection
    return audit_source(info)


def transform_details(
    inputs: Sequence[str] | dict[str, str], output: str, sql: str | None
) -> dict[str, Any]:
    details: dict[str, Any] = {
        "inputs": list(inputs.values()) if isinstance(inputs, dict) else list(inputs),
        "output": output,
        "language": "sql" if sql is not None else "python",
    }
    if sql is not None:
        details["sql_sha256"] = hashlib.sha256(sql.encode()).hexdigest()
    return details
