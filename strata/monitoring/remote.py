"""The monitoring interface over HTTP (``strata.Client("http://...").monitoring``)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from strata.core.transport import HttpTransport
from strata.monitoring.models import (
    DriftOptions,
    DriftReport,
    SeriesPoint,
    StoredProfile,
    check_name,
)
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

    def drift_with(self, reference: str, current: str, options: DriftOptions) -> DriftReport:
        body = {
            "reference": reference,
            "current": current,
            "options": options.model_dump(mode="json", exclude_unset=True),
        }
        return DriftReport.model_validate(self._call("POST", "/drift", json=body))

    def save_profile(
        self, name: str, ref: str, *, columns: list[str] | None = None
    ) -> StoredProfile:
        check_name(name, "profile")  # a path segment: refused here as the server would
        body = {"ref": ref, "columns": columns}
        return StoredProfile.model_validate(self._call("PUT", f"/profiles/{_q(name)}", json=body))

    def list_profiles(self) -> list[StoredProfile]:
        return [StoredProfile.model_validate(p) for p in self._call("GET", "/profiles")]

    def list_series(self, model: str) -> list[str]:
        return list(self._call("GET", f"/models/{_q(check_name(model, 'model'))}/series"))

    def get_series(
        self,
        model: str,
        series: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 10_000,
    ) -> list[SeriesPoint]:
        params = {"since": _time(since), "until": _time(until), "limit": limit}
        params = {k: v for k, v in params.items() if v is not None}
        path = f"/models/{_q(check_name(model, 'model'))}/series/{_q(series)}"
        data = self._call("GET", path, params=params)
        return [SeriesPoint.model_validate(p) for p in data]
