"""The monitoring interface over HTTP (``strata.Client("http://...").monitoring``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import quote

from strata.core.transport import HttpTransport
from strata.monitoring import models as m
from strata.monitoring.service import MonitoringService

P = "/api/v1/monitoring"


def _q(text: str) -> str:
    return quote(text, safe="")


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class RemoteMonitoring(MonitoringService):
    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        return self.http.request(method, f"{P}{path}", **kw)

    def drift_with(self, reference: str, current: str, options: m.DriftOptions) -> m.DriftReport:
        body = {
            "reference": reference,
            "current": current,
            "options": options.model_dump(mode="json", exclude_unset=True),
        }
        return m.DriftReport.model_validate(self._call("POST", "/drift", json=body))

    def save_profile(
        self, name: str, ref: str, *, columns: list[str] | None = None
    ) -> m.StoredProfile:
        m.check_name(name, "profile")  # a path segment: refused here as the server would
        body = {"ref": ref, "columns": columns}
        return m.StoredProfile.model_validate(self._call("PUT", f"/profiles/{_q(name)}", json=body))

    def list_profiles(self) -> list[m.StoredProfile]:
        return [m.StoredProfile.model_validate(p) for p in self._call("GET", "/profiles")]

    def list_series(self, model: str) -> list[str]:
        return list(self._call("GET", f"/models/{_q(m.check_name(model, 'model'))}/series"))

    def get_series(
        self,
        model: str,
        series: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 10_000,
    ) -> list[m.SeriesPoint]:
        params = {"since": _time(since), "until": _time(until), "limit": limit}
        params = {k: v for k, v in params.items() if v is not None}
        path = f"/models/{_q(m.check_name(model, 'model'))}/series/{_q(series)}"
        data = self._call("GET", path, params=params)
        return [m.SeriesPoint.model_validate(p) for p in data]

    # -- prediction log ------------------------------------------------------------------
    def _log_params(self, query: m.LogQuery) -> dict[str, Any]:
        data = query.model_dump(mode="json", exclude={"model"}, exclude_none=True)
        return {k: str(v) for k, v in data.items()}

    def _log(self, model: str) -> str:
        return f"/models/{_q(m.check_name(model, 'model'))}/log"

    def query_log_with(self, query: m.LogQuery) -> m.LogRows:
        data = self._call("GET", self._log(query.model), params=self._log_params(query))
        return m.LogRows.model_validate(data)

    def log_stats_with(self, query: m.LogQuery) -> m.LogStats:
        params = self._log_params(query)
        return m.LogStats.model_validate(
            self._call("GET", self._log(query.model) + "/stats", params=params)
        )

    def export_log_with(self, query: m.LogQuery, dest: Path, format: m.LogFormat) -> int:
        from urllib.parse import urlencode

        params = self._log_params(query) | {"format": format}
        params.pop("limit", None)
        url = f"{P}{self._log(query.model)}/export?{urlencode(params)}"
        self.http.download_verified(url, dest, what=f"the {query.model} prediction log export")
        return self.log_stats_with(query).rows

    def get_log_settings(self, model: str) -> m.LogSettings:
        return m.LogSettings.model_validate(self._call("GET", self._log(model) + "/settings"))

    def set_log_settings(
        self, model: str, *, sample_rate: float | None = None, retention_days: int | None = None
    ) -> m.LogSettings:
        body = {"sample_rate": sample_rate, "retention_days": retention_days}
        return m.LogSettings.model_validate(
            self._call("PUT", self._log(model) + "/settings", json=body)
        )

    def apply_retention(self, model: str) -> m.RetentionResult:
        return m.RetentionResult.model_validate(self._call("POST", self._log(model) + "/retention"))

    # -- feedback and performance --------------------------------------------------------
    def feedback_with(self, model: str, items: list[m.FeedbackItem]) -> m.FeedbackResult:
        body = {"model": model, "items": [i.model_dump(mode="json") for i in items]}
        return m.FeedbackResult.model_validate(self._call("POST", "/feedback", json=body))

    def performance_with(self, options: m.PerformanceOptions) -> m.PerformanceReport:
        body = options.model_dump(mode="json", exclude_unset=True) | {"model": options.model}
        return m.PerformanceReport.model_validate(self._call("POST", "/performance", json=body))

    # -- alert rules ---------------------------------------------------------------------
    def save_rule_with(self, rule: m.AlertRule) -> m.RuleState:
        body = rule.model_dump(mode="json")
        return m.RuleState.model_validate(self._call("PUT", f"/rules/{_q(rule.name)}", json=body))

    def get_rule(self, name: str) -> m.RuleState:
        return m.RuleState.model_validate(
            self._call("GET", f"/rules/{_q(m.check_name(name, 'rule'))}")
        )

    def list_rules(self, model: str | None = None) -> list[m.RuleState]:
        params = {} if model is None else {"model": model}
        return [m.RuleState.model_validate(r) for r in self._call("GET", "/rules", params=params)]

    def delete_rule(self, name: str) -> None:
        self._call("DELETE", f"/rules/{_q(m.check_name(name, 'rule'))}")

    def list_alert_events(self, rule: str | None = None, limit: int = 100) -> list[m.AlertEvent]:
        params: dict[str, Any] = {"limit": limit} | ({} if rule is None else {"rule": rule})
        return [m.AlertEvent.model_validate(e) for e in self._call("GET", "/alerts", params=params)]

    def evaluate_rules(self, wait: bool = False) -> list[m.AlertEvent]:
        params = {"wait": "true"} if wait else {}
        events = self._call("POST", "/rules/evaluate", params=params)
        return [m.AlertEvent.model_validate(e) for e in events]

    # -- service health ------------------------------------------------------------------
    def record_health(
        self,
        model: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        window: str = "1m",
        metrics_url: str | None = None,
    ) -> list[m.SeriesPoint]:
        body = {"since": _time(since), "until": _time(until), "window": window,
                "metrics_url": metrics_url}  # fmt: skip
        data = self._call("POST", f"/models/{_q(m.check_name(model, 'model'))}/health", json=body)
        return [m.SeriesPoint.model_validate(p) for p in data]
