"""Ingest a CSV as a versioned dataset with an expectation suite: rows that break a row-level
expectation go to quarantine (with their line and reason), the rest is published.

    python examples/data_ingest.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import strata

SUITE = """
name: trips
expectations:
  - expect_column_values_to_not_be_null: {column: fare}
  - expect_column_values_to_be_between: {column: fare, min_value: 0, max_value: 500}
"""

with tempfile.TemporaryDirectory() as tmp:
    csv = Path(tmp) / "trips.csv"
    csv.write_text("trip,fare\n1,12.5\n2,\n3,-4\n4,30\n5,7.25\n")
    client = strata.Client()
    result = client.data.ingest(csv, "examples-trips", suite=SUITE, on_fail="quarantine")

print(f"published {result.ref}: {result.rows} rows, {result.quarantined_rows} quarantined")
quarantine = client.data.quarantine(result.ref)
assert quarantine is not None
for row, reason in client.data.duckdb(quarantine.ref).project("_row, _reason").fetchall():
    print(f"  row {row}: {reason}")
