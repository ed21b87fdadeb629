"""Our drift scores from sketches against scipy's reference functions on the raw samples, and
Evidently's selection and binning rules re-derived from their definitions."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

from strata.monitoring import stattests
from strata.monitoring.drift import compare
from strata.monitoring.models import Binning, DriftOptions, Method
from strata.monitoring.scan import sketch_source
from strata.monitoring.sketch import EXACT_MAX, Sketch, from_counts, merge


def _sk(sample: np.ndarray) -> Sketch:
    values, counts = np.unique(sample, return_counts=True)
    numeric = sample.dtype.kind in "fiu"
    return from_counts(numeric, values, counts, integral=sample.dtype.kind in "iu")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_wasserstein_is_scipys_over_the_reference_std(rng: np.random.Generator) -> None:
    ref = np.round(rng.normal(10, 3, 20_000), 2)
    cur = np.round(rng.normal(10.6, 3.4, 15_000), 2)
    expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert stattests.wasserstein_norm(_sk(ref), _sk(cur)) == pytest.approx(expected, rel=1e-9)
    same = stattests.wasserstein_norm(_sk(ref), _sk(ref))
    assert same == 0.0


def test_jensenshannon_is_scipys_over_shares(rng: np.random.Generator) -> None:
    cats = np.array(list("abcdefg"), dtype=object)
    ref = rng.choice(cats[:6], 5_000, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    cur = rng.choice(cats, 4_000, p=[0.1, 0.1, 0.2, 0.2, 0.2, 0.1, 0.1])
    keys = sorted(set(ref) | set(cur))
    p = np.array([np.sum(ref == k) for k in keys]) / len(ref)
    q = np.array([np.sum(cur == k) for k in keys]) / len(cur)
    ours = stattests.jensenshannon(_sk(ref), _sk(cur), numeric=False)
    assert ours == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert ours > 0.1


def test_ks_chisquare_and_z_are_scipys(rng: np.random.Generator) -> None:
    ref = rng.normal(0, 1, 800)
    cur = rng.normal(0.3, 1, 600)
    assert stattests.ks(_sk(ref), _sk(cur)) == pytest.approx(stats.ks_2samp(ref, cur).pvalue)
    cref = rng.choice(np.array(["x", "y", "z"], dtype=object), 900, p=[0.5, 0.3, 0.2])
    ccur = rng.choice(np.array(["x", "y", "z"], dtype=object), 700, p=[0.4, 0.3, 0.3])
    keys = ["x", "y", "z"]
    obs = np.array([np.sum(ccur == k) for k in keys])
    exp = np.array([np.sum(cref == k) for k in keys]) * len(ccur) / len(cref)
    assert stattests.chisquare(_sk(cref), _sk(ccur)) == pytest.approx(
        stats.chisquare(obs, exp).pvalue
    )
    # the two-proportion z-test equals the 2x2 chi-square test without continuity correction
    bref = rng.choice(np.array(["no", "yes"], dtype=object), 900, p=[0.6, 0.4])
    bcur = rng.choice(np.array(["no", "yes"], dtype=object), 800, p=[0.5, 0.5])
    table = [
        [np.sum(bref == "no"), np.sum(bref == "yes")],
        [np.sum(bcur == "no"), np.sum(bcur == "yes")],
    ]
    p_chi2 = stats.chi2_contingency(table, correction=False).pvalue
    assert stattests.z_test(_sk(bref), _sk(bcur)) == pytest.approx(p_chi2, rel=1e-9)


def test_psi_binning_sturges_and_quantile(rng: np.random.Generator) -> None:
    ref = np.round(rng.gamma(2.0, 2.0, 10_000), 3)
    cur = np.round(rng.gamma(2.4, 2.0, 10_000), 3)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    p = np.histogram(ref, edges)[0] / len(ref)
    q = np.histogram(cur, edges)[0] / len(cur)

    def fill(x: np.ndarray) -> np.ndarray:  # Evidently's rule for empty bins
        low = x[x > 0].min()
        return np.where(x == 0, low / 10**6 if low <= 0.0001 else 0.0001, x)

    p, q = fill(p), fill(q)
    expected = float(np.sum((p - q) * np.log(p / q)))
    assert stattests.psi(_sk(ref), _sk(cur), numeric=True) == pytest.approx(expected, rel=1e-9)
    # quantile bins: deciles of the reference hold ~10% of it each
    rp, _ = stattests.binned(_sk(ref), _sk(cur), numeric=True, bins=Binning.QUANTILE, n_bins=10)
    assert len(rp) == 10 and np.allclose(rp, 0.1, atol=0.01)
    qpsi = stattests.psi(_sk(ref), _sk(cur), numeric=True, bins=Binning.QUANTILE)
    assert qpsi > 0.05 and qpsi != pytest.approx(expected)


def test_default_method_follows_evidently(rng: np.random.Generator) -> None:
    big, small = rng.normal(size=2000), rng.normal(size=1000)
    assert stattests.default_method(_sk(big), _sk(big), numeric=True) is Method.WASSERSTEIN
    assert stattests.default_method(_sk(small), _sk(big), numeric=True) is Method.KS
    few = rng.integers(0, 4, 2000).astype(float)  # <= 5 values: Jensen-Shannon
    assert stattests.default_method(_sk(few), _sk(few), numeric=True) is Method.JENSENSHANNON
    cats = rng.choice(np.array(list("abc"), dtype=object), 500)
    assert stattests.default_method(_sk(cats), _sk(cats), numeric=False) is Method.CHISQUARE
    two = rng.choice(np.array(list("ab"), dtype=object), 500)
    assert stattests.default_method(_sk(two), _sk(two), numeric=False) is Method.Z


def test_sketches_merge_to_the_sketch_of_the_union(rng: np.random.Generator) -> None:
    a, b = rng.integers(0, 50, 3000).astype(float), rng.integers(20, 90, 2000).astype(float)
    merged = merge(_sk(a), _sk(b))
    whole = _sk(np.concatenate([a, b]))
    assert np.array_equal(merged.values, whole.values)
    assert np.array_equal(merged.counts, whole.counts)


def test_duckdb_sketches_drop_nulls_nan_and_inf_and_bucket_wide_columns() -> None:
    con = duckdb.connect()
    n = EXACT_MAX + 5_000
    rng = np.random.default_rng(1)
    wide = rng.normal(100, 15, n)
    con.register(
        "t",
        pa.table(
            {
                "x": pa.array([1.0, None, float("nan"), float("inf"), 2.0, 2.0]),
                "s": pa.array(["a", None, "b", "a", "a", None]),
            }
        ),
    )
    rows, sk, _ = sketch_source(con, "t")
    assert rows == 6
    assert sk["x"].values.tolist() == [1.0, 2.0] and sk["x"].counts.tolist() == [1, 2]
    assert sk["x"].nulls == 3
    assert sk["s"].values.tolist() == ["a", "b"] and sk["s"].nulls == 2
    con.register("w", pa.table({"v": wide}))
    con.register("w2", pa.table({"v": wide + 3.0}))
    _, a, _ = sketch_source(con, "w")
    _, b, _ = sketch_source(con, "w2")
    assert not a["v"].exact and a["v"].distinct < n / 2
    # bucketed at relative accuracy 1e-4: the score stays that of the raw samples
    expected = stats.wasserstein_distance(wide, wide + 3.0) / np.std(wide)
    assert stattests.wasserstein_norm(a["v"], b["v"]) == pytest.approx(expected, rel=1e-2)


def test_compare_reports_missing_columns_and_no_data() -> None:
    con = duckdb.connect()
    rng = np.random.default_rng(3)
    con.register("r", pa.table({"a": rng.normal(size=3000), "b": rng.choice(["x", "y"], 3000)}))
    con.register("c", pa.table({"a": rng.normal(1, 1, 3000), "z": rng.normal(size=3000)}))
    con.register("e", pa.table({"a": pa.array([], pa.float64())}))
    ref, cur, none = (
        ("r", *sketch_source(con, "r")),
        ("c", *sketch_source(con, "c")),
        ("e", *sketch_source(con, "e")),
    )
    report = compare(ref, cur, DriftOptions())
    assert report.missing == {"current": ["b"], "reference": ["z"]}
    assert list(report.columns) == ["a"] and report.columns["a"].drifted
    assert report.dataset_drift and report.drifted_share == 1.0
    empty = compare(ref, none, DriftOptions())
    assert empty.status == "no data" and not empty.columns and not empty.dataset_drift
