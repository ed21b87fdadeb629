"""What a validation answers: a report of one result per expectation (pure models, no I/O:
remote clients rebuild them from JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExpectationResult(BaseModel):
    """The answer to one expectation, with GE's meaning for every count.

    ``unexpected_percent`` is a percentage (0-100) of the rows the expectation judged: the
    non-null rows for column-value checks, all rows for the null check, the non-skipped rows
    for the column pair. For column-value checks ``observed_value`` is the share (0-1) of
    judged rows that pass, the number ``mostly`` is compared with; for aggregate checks it
    is the statistic (row count, mean, median, sample stdev, unique proportion, the latest
    timestamp as ISO text, the column's DuckDB type, the column's position, the number of rows
    a custom query returned). ``error`` is set (and ``success`` false) when the check could
    not run, e.g. a bound whose type does not compare with the column.
    """

    expectation_type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    success: bool
    observed_value: Any = None
    element_count: int | None = None
    missing_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    unexpected_sample: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None

    model_config = ConfigDict(extra="forbid")


class ValidationStatistics(BaseModel):
    evaluated: int
    successful: int
    unsuccessful: int
    success_percent: float | None


class ValidationReport(BaseModel):
    """A suite's results in suite order; JSON-serialisable as is (``model_dump(mode="json")``)."""

    suite_name: str = "suite"
    success: bool
    results: list[ExpectationResult]
    statistics: ValidationStatistics
    row_count: int
    duration_s: float
