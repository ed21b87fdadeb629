"""Dataset profiles over DuckDB: per-column statistics that can be merged and compared.

:func:`profile` reads the relation in two aggregate passes (a third, small one only when a
column has more than 10,000 distinct values). Pass 1: counts, nulls, min/max and an
approximate distinct count (HyperLogLog). Pass 2: for every column with at most ~10,000
distinct values, its exact value counts, from which everything else is derived exactly
(distinct, mean, std, quantiles, histogram, top values); columns with more distinct values
get SQL moments, T-digest quantiles (approximate), an equal-width histogram, an exact
``COUNT(DISTINCT)`` when nearly every value is distinct, and top-value candidates from an
approximate top-k, whose counts pass 3 counts exactly. The profile says what is exact
(``distinct_exact``, ``quantiles_exact``, ``top_values_exact``).

Profiles are drift references for monitoring, so they keep exact sufficient statistics
(count, nulls, sum, sum of squares, m2 = sum of squared deviations, min, max), the histogram
bin edges and, for columns with at most 200 distinct values, every value count:
:func:`merge_profiles` combines two profiles of one schema (exact counts, mean, std, min,
max); :func:`compare_profiles` reports per-column changes with PSI and Jensen-Shannon
distance; :func:`suggest_suite` turns a profile into an expectation suite to edit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from strata.data.profiles.compute import profile
    from strata.data.profiles.merge import (
        ColumnDiff,
        ProfileDiff,
        compare_profiles,
        js_distance,
        merge_profiles,
        psi,
        suggest_suite,
    )
    from strata.data.profiles.model import (
        QUANTILE_PROBS,
        ColumnProfile,
        DatasetProfile,
        Histogram,
        ValueCount,
    )

# Each name's module is imported on first use (PEP 562), so importing one submodule (a remote
# client reading the pure models) does not load the DuckDB machinery beside it.
_HOME = {
    "ColumnDiff": "strata.data.profiles.merge",
    "ColumnProfile": "strata.data.profiles.model",
    "DatasetProfile": "strata.data.profiles.model",
    "Histogram": "strata.data.profiles.model",
    "ProfileDiff": "strata.data.profiles.merge",
    "QUANTILE_PROBS": "strata.data.profiles.model",
    "ValueCount": "strata.data.profiles.model",
    "compare_profiles": "strata.data.profiles.merge",
    "js_distance": "strata.data.profiles.merge",
    "merge_profiles": "strata.data.profiles.merge",
    "profile": "strata.data.profiles.compute",
    "psi": "strata.data.profiles.merge",
    "suggest_suite": "strata.data.profiles.merge",
}


__getattr__ = lazy_attributes(__name__, _HOME)


__all__ = [
    "QUANTILE_PROBS",
    "ColumnDiff",
    "ColumnProfile",
    "DatasetProfile",
    "Histogram",
    "ProfileDiff",
    "ValueCount",
    "compare_profiles",
    "js_distance",
    "merge_profiles",
    "profile",
    "psi",
    "suggest_suite",
]
