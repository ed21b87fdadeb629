"""The monitoring interface (``client.monitoring``), embedded and remote alike.

A REF names what drift compares:

- a dataset version: ``flights@3``, ``flights@latest``, ``flights@<tag>``;
- a window of a model's prediction log: ``log:flights@production?since=2013-07-01&until=
  2013-07-08`` (``@`` an alias or a version number, or omitted for every version; the
  window's times are ISO 8601, UTC when they carry no offset; ``until`` is exclusive). Its
  columns are the model's inputs plus ``prediction``;
- a stored profile: ``profile:NAME`` (mergeable sketches saved by :meth:`save_profile`).

Times are timezone-aware UTC. Writes are audited.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import Any

from strata.core.parse import parse_options
from strata.monitoring.models import DriftOptions, DriftReport, SeriesPoint, StoredProfile


class MonitoringService(ABC):
    # -- drift ---------------------------------------------------------------------------
    def drift(
        self, reference: str, current: str, options: DriftOptions | None = None, **fields: Any
    ) -> DriftReport:
        """Compare ``current`` with ``reference`` column by column (Evidently's default tests
        unless ``method``/``tests`` say otherwise; see :class:`DriftOptions`).

        Columns missing on one side are listed in ``report.missing`` and the rest tested; a
        side with no rows gives ``status == "no data"``. InvalidInput for a malformed REF or
        option, NotFound for an unknown dataset, version, model, alias or profile."""
        opts = parse_options(DriftOptions, options, **fields)
        return self.drift_with(reference, current, opts)

    @abstractmethod
    def drift_with(self, reference: str, current: str, options: DriftOptions) -> DriftReport:
        """:meth:`drift` with its options parsed."""

    def drift_html(
        self, reference: str, current: str, options: DriftOptions | None = None, **fields: Any
    ) -> str:
        """The drift report as one self-contained HTML page (inline CSS and SVG, no script,
        nothing fetched) with a distribution overlay per column."""
        from strata.monitoring.html import render_drift

        page: str = render_drift(self.drift(reference, current, options, **fields))
        return page

    # -- stored references ---------------------------------------------------------------
    @abstractmethod
    def save_profile(
        self, name: str, ref: str, *, columns: list[str] | None = None
    ) -> StoredProfile:
        """Sketch ``ref`` (a dataset version or log window) and store it as ``profile:NAME``,
        replacing a profile of that name. Its rows are never needed again."""

    @abstractmethod
    def list_profiles(self) -> list[StoredProfile]:
        """Stored profiles by name."""

    # -- series --------------------------------------------------------------------------
    @abstractmethod
    def list_series(self, model: str) -> list[str]:
        """Names of the series recorded for ``model`` (``drift.share``, ``drift.score.x``...)."""

    @abstractmethod
    def get_series(
        self,
        model: str,
        series: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 10_000,
    ) -> list[SeriesPoint]:
        """The latest ``limit`` points of one series in [since, until), oldest first."""
