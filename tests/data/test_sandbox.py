"""User-written SQL (transforms, custom expectations) can read its inputs and nothing else."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from strata.core.errors import InvalidInput, NotFound
from strata.data.embedded import EmbeddedData


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text("token\nhunter2\n")
    return path


def test_transform_sql_cannot_read_other_files(lite: EmbeddedData, secret_file: Path) -> None:
    lite.ingest(pd.DataFrame({"a": [1, 2, 3]}), name="src")
    ok = lite.transform(["src"], sql="SELECT a * 2 AS b FROM src", output="doubled")
    assert ok.rows == 3
    # The file exists and is readable: only the sandbox stands between the SQL and it.
    assert pd.read_csv(secret_file)["token"].tolist() == ["hunter2"]
    with pytest.raises(InvalidInput) as info:
        lite.transform(["src"], sql=f"SELECT * FROM read_csv('{secret_file}')", output="leak")
    _assert_refused(info.value, "leak")
    with pytest.raises(InvalidInput) as info:
        lite.transform(
            ["src"], sql=f"COPY (SELECT 1) TO '{secret_file.parent / 'w.csv'}'", output="w"
        )
    # Refused before DuckDB sees it: user SQL is one read-only SELECT.
    assert info.value.message.startswith("sql must be exactly one SELECT"), info.value.message
    assert not (secret_file.parent / "w.csv").exists()
    with pytest.raises(NotFound):  # nothing half-written either
        lite.get_dataset("leak")


def _assert_refused(err: InvalidInput, output: str) -> None:
    """The refusal is DuckDB's permission error, reported as bad transform SQL."""
    assert type(err) is InvalidInput, repr(err)
    assert err.message.startswith("Transform SQL failed: Permission Error"), err.message
    assert "hunter2" not in err.message and "hunter2" not in repr(err.details)
    assert err.details == {"field": "sql"}, (output, err.details)


def test_custom_sql_expectation_is_sandboxed(lite: EmbeddedData, secret_file: Path) -> None:
    lite.ingest(pd.DataFrame({"a": [1, 2, 3]}), name="nums")
    fine = lite.validate(
        "nums",
        {
            "expectations": [
                {
                    "expect_sql_query_to_return_no_rows": {
                        "query": "SELECT * FROM {relation} WHERE a > 10"
                    }
                }
            ]
        },
    )
    assert fine.success
    report = lite.validate(
        "nums",
        {
            "expectations": [
                {
                    "expect_sql_query_to_return_no_rows": {
                        "query": f"SELECT * FROM {{relation}}, read_csv('{secret_file}')"
                    }
                }
            ]
        },
    )
    result = report.results[0]
    assert not result.success
    assert "hunter2" not in result.model_dump_json()
    assert result.error and "Permission" in result.error
