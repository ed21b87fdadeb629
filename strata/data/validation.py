"""Validation of dataset versions: the public entry points of ``strata.data.expectations``.

``load_suite`` reads a suite (YAML, GE JSON or a dict); ``validate`` runs it over a DuckDB
table or view in one aggregate scan; ``row_failure_sql`` gives the per-row reason expression
the ingestion quarantine splits on. See :mod:`strata.data.expectations` for the supported
expectations and their semantics.
"""

from strata.data.expectations import (
    Expectation,
    ExpectationResult,
    Suite,
    ValidationReport,
    ValidationStatistics,
    describe,
    load_suite,
    parse_duration,
    row_failure_sql,
    supported_expectations,
    type_family,
    validate,
)

__all__ = [
    "Expectation",
    "ExpectationResult",
    "Suite",
    "ValidationReport",
    "ValidationStatistics",
    "describe",
    "load_suite",
    "parse_duration",
    "row_failure_sql",
    "supported_expectations",
    "type_family",
    "validate",
]
