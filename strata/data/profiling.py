"""Profiling of dataset versions: the public entry points of ``strata.data.profiles``.

``profile`` computes a :class:`DatasetProfile` in two or three DuckDB passes;
``merge_profiles`` and ``compare_profiles`` combine and diff profiles (monitoring's drift
references); ``suggest_suite`` proposes an expectation suite from a profile.
"""

from strata.data.profiles import (
    QUANTILE_PROBS,
    ColumnDiff,
    ColumnProfile,
    DatasetProfile,
    Histogram,
    ProfileDiff,
    ValueCount,
    compare_profiles,
    js_distance,
    merge_profiles,
    profile,
    psi,
    suggest_suite,
)

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
