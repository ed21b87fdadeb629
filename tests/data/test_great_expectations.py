"""Strata's validation gives Great Expectations' answers: every expectation type, run by the
real Great Expectations on the same rows, compared result by result.

Great Expectations is never installed into Strata's environment: the test builds its own
venv (``GE_PIN`` from PyPI; ``$STRATA_TEST_GE_VENV``, default ``benchmarks/.venvs/ge``,
gitignored and shared with benchmarks/data_validation.py) on first use, about half a minute,
then reuses it. The table is small and built for the edge cases: NULLs, ``mostly``, ties,
both-null and one-null pairs, empty strings, uniqueness over NULLs.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from strata.data.embedded import EmbeddedData
from strata.data.expectations.suite import SPECS

REPO = Path(__file__).resolve().parents[2]
GE_PIN = "great_expectations==1.24.*"
GE_VENV = Path(os.environ.get("STRATA_TEST_GE_VENV", REPO / "benchmarks" / ".venvs" / "ge"))
WORKER = Path(__file__).with_name("ge") / "ge_worker.py"
NOW = datetime.now(UTC).replace(microsecond=0)

FRAME = pd.DataFrame(
    {
        "id": list(range(1, 13)),
        "score": [1.0, 2.0, 2.0, None, 3.5, 3.5, 10.0, None, -1.0, 2.0, 7.25, 0.0],
        "city": ["paris", "lyon", "", None, "nice", "paris", "", "lille", None, "lyon",
                 "paris", "nice"],
        "code": ["A1", "B2", "c3", None, "A10", "", "ZZ", "A1", "B", "A2", None, "Q9"],
        "dup": [1, 2, 2, None, None, 3, 4, 5, 6, 7, 8, 9],
        "a": [5, 1, None, None, 3, 3, 9, 0, None, 2, 4, 8],
        "b": [1, 1, None, 2, None, 4, 3, 0, None, 1, 1, 1],
        "ts": [NOW - timedelta(hours=h) for h in range(3, 15)],  # the latest is 3 h old
    }
)  # fmt: skip

V = "expect_column_values_to_"
# (Strata's expectation, GE's): the same check; GE's differs only where GE spells it otherwise.
CASES: list[tuple[str, dict[str, Any], str, dict[str, Any], str]] = [
    ("expect_column_to_exist", {"column": "city"}, "", {}, "pandas"),
    ("expect_column_to_exist", {"column": "nope"}, "", {}, "pandas"),
    (V + "not_be_null", {"column": "score", "mostly": 0.8}, "", {}, "pandas"),
    (V + "not_be_null", {"column": "score", "mostly": 0.9}, "", {}, "pandas"),
    (V + "not_be_null", {"column": "city"}, "", {}, "pandas"),
    (V + "be_between", {"column": "score", "min_value": 0, "max_value": 5}, "", {}, "pandas"),
    (V + "be_between", {"column": "score", "min_value": 0, "max_value": 5, "mostly": 0.7},
     "", {}, "pandas"),
    (V + "be_between", {"column": "score", "min_value": 2, "strict_min": True}, "", {}, "pandas"),
    (V + "be_in_set", {"column": "city", "value_set": ["paris", "lyon", "nice", ""]},
     "", {}, "pandas"),
    (V + "match_regex", {"column": "code", "regex": "^[A-Z][0-9]+$"}, "", {}, "pandas"),
    (V + "match_regex", {"column": "code", "regex": "[0-9]", "mostly": 0.6}, "", {}, "pandas"),
    (V + "be_unique", {"column": "dup"}, "", {}, "pandas"),
    (V + "be_unique", {"column": "id"}, "", {}, "pandas"),
    (V + "be_of_type", {"column": "id", "type_": "int64"}, "", {}, "pandas"),
    (V + "be_of_type", {"column": "score", "type_": "int64"}, "", {}, "pandas"),
    ("expect_table_row_count_to_be_between", {"min_value": 10, "max_value": 12}, "", {},
     "pandas"),
    ("expect_table_row_count_to_be_between", {"max_value": 11}, "", {}, "pandas"),
    ("expect_column_mean_to_be_between", {"column": "score", "min_value": 2, "max_value": 3},
     "", {}, "pandas"),
    ("expect_column_median_to_be_between", {"column": "score", "min_value": 2.5}, "", {},
     "pandas"),
    # An even count whose middle values differ: the median interpolates (6.5, not 6 or 7).
    ("expect_column_median_to_be_between", {"column": "id", "min_value": 6.5, "max_value": 6.5},
     "", {}, "pandas"),
    ("expect_column_stdev_to_be_between", {"column": "score", "max_value": 3}, "", {},
     "pandas"),
    ("expect_column_proportion_of_unique_values_to_be_between",
     {"column": "city", "min_value": 0.5}, "", {}, "pandas"),
    ("expect_column_pair_values_a_to_be_greater_than_b", {"column_A": "a", "column_B": "b"},
     "", {}, "pandas"),
    ("expect_column_pair_values_a_to_be_greater_than_b",
     {"column_A": "a", "column_B": "b", "or_equal": True, "mostly": 0.7}, "", {}, "pandas"),
    # GE has no "max to be recent": the same check is its max-between with the cut-off.
    ("expect_column_max_to_be_recent", {"column": "ts", "max_age": "4h"},
     "expect_column_max_to_be_between",
     {"column": "ts", "min_value": (NOW - timedelta(hours=4)).isoformat()}, "pandas"),
    ("expect_column_max_to_be_recent", {"column": "ts", "max_age": "2h"},
     "expect_column_max_to_be_between",
     {"column": "ts", "min_value": (NOW - timedelta(hours=2)).isoformat()}, "pandas"),
    # Custom SQL: GE runs it only on SQL data sources (here SQLite holding the same rows).
    ("expect_sql_query_to_return_no_rows", {"query": "SELECT * FROM {relation} WHERE score < 0"},
     "unexpected_rows_expectation",
     {"unexpected_rows_query": "SELECT * FROM {batch} WHERE score < 0"}, "sqlite"),
    ("unexpected_rows_expectation",
     {"unexpected_rows_query": "SELECT * FROM {batch} WHERE score > 100"}, "", {}, "sqlite"),
]  # fmt: skip


def _ge_python() -> Path:
    """GE's venv, built on first use; a lock file keeps parallel test workers from racing."""
    python = GE_VENV / "bin" / "python"
    GE_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(GE_VENV.parent / ".ge.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = GE_VENV / ".strata-ready"
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(GE_VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", GE_PIN, "pyarrow", "sqlalchemy"],
                check=True,
                timeout=900,
            )
            ready.write_text(GE_PIN)
    return python


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def test_every_expectation_type_is_covered() -> None:
    assert {c[0] for c in CASES} == set(SPECS), "a new expectation type needs a GE case here"


@pytest.mark.slow
def test_answers_match_great_expectations(lite: EmbeddedData, tmp_path: Path) -> None:
    python = _ge_python()
    data = tmp_path / "edge.parquet"
    FRAME.to_parquet(data, index=False)
    entries = [
        {"type": ge_type or t, "kwargs": ge_kwargs or kw, "engine": engine}
        for t, kw, ge_type, ge_kwargs, engine in CASES
    ]
    suite_path, out = tmp_path / "suite.json", tmp_path / "ge.json"
    suite_path.write_text(json.dumps(entries))
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [str(python), str(WORKER), str(data), str(suite_path), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ge = json.loads(out.read_text())

    lite.ingest(FRAME, "edge")
    suite = {"expectations": [{t: kw} for t, kw, *_ in CASES]}
    report = lite.validate("edge", suite)
    assert len(report.results) == len(CASES) == len(ge)
    problems = []
    for (t, kw, *_), mine, theirs in zip(CASES, report.results, ge, strict=True):
        case = f"{t} {kw}"
        if mine.error:
            problems.append(f"{case}: Strata error {mine.error}")
            continue
        if mine.success != theirs["success"]:
            problems.append(f"{case}: success {mine.success} vs GE {theirs['success']}")
        if (
            theirs["unexpected_count"] is not None
            and mine.unexpected_count != theirs["unexpected_count"]
        ):
            problems.append(
                f"{case}: unexpected_count {mine.unexpected_count} vs GE "
                f"{theirs['unexpected_count']}"
            )
        problems += _observed(case, t, mine.observed_value, theirs)
    assert problems == []


def _observed(case: str, t: str, mine: Any, theirs: dict[str, Any]) -> list[str]:
    """Compare observed values where both engines report the same quantity."""
    got = theirs["observed_value"]
    if t in SPECS and SPECS[t].kind == "map" and theirs["unexpected_percent"] is not None:
        # Strata's observed value for a column-value check is the share of judged rows that
        # pass; GE reports the share that fails (as a percentage of the same rows).
        share = 1 - theirs["unexpected_percent"] / 100
        return [] if _close(float(mine), share) else [f"{case}: passing {mine} vs GE {share}"]
    if t == "expect_column_max_to_be_recent":
        ours = datetime.fromisoformat(str(mine))
        their = datetime.fromisoformat(str(got))
        their = their if their.tzinfo else their.replace(tzinfo=UTC)
        return [] if ours == their else [f"{case}: max {ours} vs GE {their}"]
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if _close(float(mine), float(got)) else [f"{case}: observed {mine} vs GE {got}"]
    return []
