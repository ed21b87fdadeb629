"""The monitoring interface (``client.monitoring``), embedded and remote alike.

A REF names what drift compares:

- a dataset version: ``flights@3``, ``flights@latest``, ``flights@<tag>``;
- a window of a model's prediction log: ``log:flights@production?since=2013-07-01&until=
  2013-07-08`` (``@`` an alias or a version number, or omitted for every version; the
  window's times are ISO 8601, UTC when they carry no offset; ``until`` is exclusive). Its
  columns are the model's inputs plus ``prediction``;
- the ground-truth labels of a window's predictions (label drift): ``labels:flights@production
  ?since=...&until=...`` (one column ``label``, from :meth:`feedback`);
- a stored profile: ``profile:NAME`` (mergeable sketches saved by :meth:`save_profile`).

Times are timezone-aware UTC. Writes are audited.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strata.core.parse import parse_options
from strata.monitoring.models import (
    AlertEvent,
    AlertRule,
    DriftOptions,
    DriftReport,
    FeedbackItem,
    FeedbackResult,
    LogFormat,
    LogQuery,
    LogRows,
    LogSettings,
    LogStats,
    PerformanceOptions,
    PerformanceReport,
    RetentionResult,
    RuleState,
    SeriesPoint,
    StoredProfile,
)


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

    # -- prediction log ------------------------------------------------------------------
    def query_log(self, query: LogQuery | None = None, **fields: Any) -> LogRows:
        """Rows of a model's prediction log, newest first (see :class:`LogQuery`: model,
        version or alias, since/until, request_id, entity_key, endpoint, path, limit).
        A model that never logged gives no rows."""
        return self.query_log_with(parse_options(LogQuery, query, **fields))

    @abstractmethod
    def query_log_with(self, query: LogQuery) -> LogRows: ...

    def log_stats(self, query: LogQuery | None = None, **fields: Any) -> LogStats:
        """Rows, requests, counts by version and path, latency percentiles of a window."""
        return self.log_stats_with(parse_options(LogQuery, query, **fields))

    @abstractmethod
    def log_stats_with(self, query: LogQuery) -> LogStats: ...

    def export_log(
        self,
        dest: str | Path,
        query: LogQuery | None = None,
        *,
        format: LogFormat = "parquet",
        **fields: Any,
    ) -> int:
        """Write every row the query selects (``limit`` ignored) to the local file ``dest``
        as Parquet, CSV or JSON lines, oldest first; the number of rows written."""
        if format not in ("parquet", "csv", "jsonl"):
            from strata.core.errors import InvalidInput

            raise InvalidInput(
                f"format must be parquet, csv or jsonl, got {format!r}",
                details={"field": "format"},
            )
        return self.export_log_with(parse_options(LogQuery, query, **fields), Path(dest), format)

    @abstractmethod
    def export_log_with(self, query: LogQuery, dest: Path, format: LogFormat) -> int: ...

    @abstractmethod
    def get_log_settings(self, model: str) -> LogSettings:
        """The endpoint's sampling rate and retention (defaults 1.0 and 30 days)."""

    @abstractmethod
    def set_log_settings(
        self, model: str, *, sample_rate: float | None = None, retention_days: int | None = None
    ) -> LogSettings:
        """Change the endpoint's sampling rate and/or retention (audited)."""

    @abstractmethod
    def apply_retention(self, model: str) -> RetentionResult:
        """Delete the model's log partitions older than its retention (audited)."""

    # -- feedback and performance --------------------------------------------------------
    def feedback(
        self, model: str, items: Sequence[FeedbackItem | dict[str, Any]]
    ) -> FeedbackResult:
        """Store ground-truth labels (``{"request_id", "row", "label"}`` or ``{"entity_key",
        "ts", "label"}``; at most 100,000 per call). Every item is kept; those matching no
        logged prediction yet are counted in ``unknown`` and listed."""
        from strata.core.errors import InvalidInput
        from strata.monitoring.feedback import MAX_ITEMS
        from strata.monitoring.models import check_name

        check_name(model, "model")
        if len(items) > MAX_ITEMS:
            raise InvalidInput(
                f"at most {MAX_ITEMS:,} feedback items per call, got {len(items):,}",
                details={"field": "items"},
            )
        parsed = []
        for n, item in enumerate(items):
            if isinstance(item, FeedbackItem):
                parsed.append(item)
                continue
            try:
                parsed.append(parse_options(FeedbackItem, None, **dict(item)))
            except InvalidInput as exc:
                raise InvalidInput(
                    f"feedback item {n}: {exc.message}", details={"item": n} | exc.details
                ) from None
        return self.feedback_with(model, parsed)

    @abstractmethod
    def feedback_with(self, model: str, items: list[FeedbackItem]) -> FeedbackResult: ...

    def performance(
        self, options: PerformanceOptions | None = None, **fields: Any
    ) -> PerformanceReport:
        """Metrics per window (and version, segment) with confidence intervals, feedback
        coverage, and CBPE estimates where the model logs probabilities (see
        :class:`PerformanceOptions`). ``store=True`` records them as series."""
        return self.performance_with(parse_options(PerformanceOptions, options, **fields))

    @abstractmethod
    def performance_with(self, options: PerformanceOptions) -> PerformanceReport: ...

    # -- alert rules ---------------------------------------------------------------------
    def save_rule(self, rule: AlertRule | dict[str, Any] | None = None, **fields: Any) -> RuleState:
        """Create or replace a rule (admin: its actions run with the server's rights).
        InvalidInput for a malformed expression, an unknown series (the message lists the
        known ones) or a webhook URL the policy refuses."""
        if isinstance(rule, dict):
            fields = rule | fields
            rule = None
        return self.save_rule_with(parse_options(AlertRule, rule, **fields))

    @abstractmethod
    def save_rule_with(self, rule: AlertRule) -> RuleState: ...

    @abstractmethod
    def get_rule(self, name: str) -> RuleState:
        """One rule with its state; NotFound."""

    @abstractmethod
    def list_rules(self, model: str | None = None) -> list[RuleState]:
        """Rules by name, optionally of one model."""

    @abstractmethod
    def delete_rule(self, name: str) -> None:
        """Delete a rule (its firing history stays); NotFound."""

    @abstractmethod
    def list_alert_events(self, rule: str | None = None, limit: int = 100) -> list[AlertEvent]:
        """Firings, newest first, with the values and each action's result."""

    @abstractmethod
    def evaluate_rules(self, wait: bool = False) -> list[AlertEvent]:
        """One evaluation pass over every enabled rule now (what the server's scheduler runs
        every ``STRATA_ALERT_INTERVAL`` seconds); the firings. A retraining action is
        queued, not awaited: its entry in ``detail["actions"]`` says ``status: queued`` and
        turns ``running``, ``succeeded`` (with ``run_id``) or ``failed`` in
        :meth:`list_alert_events`. ``wait=True`` returns once the pass's jobs are done,
        with their final results."""

    # -- service health ------------------------------------------------------------------
    @abstractmethod
    def record_health(
        self,
        model: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        window: str = "1m",
        metrics_url: str | None = None,
    ) -> list[SeriesPoint]:
        """Compute and store health series: per ``window`` of the prediction log
        (``requests``, ``throughput_rps``, ``p50/p90/p99_latency_ms``, ``batch_size_mean``)
        and, with ``metrics_url`` (a serving worker's ``/metrics``; admin, under the webhook
        URL policy), ``error_rate``, ``queue_time_ms``, ``cpu_percent``, ``memory_mb`` of
        that worker. The points stored."""

    def grafana_dashboard(self, endpoint: str) -> dict[str, Any]:
        """A Grafana dashboard (JSON model) for a serving endpoint's Prometheus metrics."""
        from strata.monitoring.grafana import grafana_dashboard
        from strata.monitoring.models import check_name

        board: dict[str, Any] = grafana_dashboard(check_name(endpoint, "endpoint"))
        return board
