"""Runs in Great Expectations' own venv (never Strata's): validate a Parquet file with GE.

    python ge_worker.py DATA.parquet SUITE.json OUT.json

SUITE.json is a list of {"type", "kwargs", "engine"}: engine "pandas" (an in-memory
DataFrame) or "sqlite" (the same rows in a SQLite table, for the SQL-only expectations).
OUT.json gets one {"success", "unexpected_count", "unexpected_percent", "observed_value"} per
entry, in order.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def main() -> None:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    data, suite_path, out = sys.argv[1:4]
    entries = json.loads(Path(suite_path).read_text())
    df = pd.read_parquet(data)
    context = gx.get_context(mode="ephemeral")
    batches = {}
    pandas_source = context.data_sources.add_pandas("pd")
    batches["pandas"] = (
        pandas_source.add_dataframe_asset("t")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": df})
    )
    if any(e["engine"] == "sqlite" for e in entries):
        db = Path(tempfile.mkdtemp()) / "t.db"
        with sqlite3.connect(db) as con:
            df.to_sql("t", con, index=False)
        sql_source = context.data_sources.add_sqlite("lite", connection_string=f"sqlite:///{db}")
        batches["sqlite"] = (
            sql_source.add_table_asset("t", table_name="t")
            .add_batch_definition_whole_table("all")
            .get_batch()
        )
    results = []
    for e in entries:
        expectation = ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"]).to_domain_obj()
        r = batches[e["engine"]].validate(expectation)
        res = r.result or {}
        results.append(
            {
                "success": bool(r.success),
                "unexpected_count": res.get("unexpected_count"),
                "unexpected_percent": res.get("unexpected_percent"),
                "observed_value": plain(res.get("observed_value")),
            }
        )
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
