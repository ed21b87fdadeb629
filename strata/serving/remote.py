"""The serving interface over HTTP (``strata.Client("http://...").serving``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from strata.core.page import Page
from strata.core.transport import HttpTransport
from strata.serving.models import (
    BatchJobSpec,
    EndpointStatus,
    ScoringJob,
    StreamJobSpec,
    TrafficPolicy,
    check_endpoint_name,
)
from strata.serving.service import ServingService

P = "/api/v1/serving/endpoints"
J = "/api/v1/serving/jobs"


def _name(name: str) -> str:
    return quote(check_endpoint_name(name), safe="")


class RemoteServing(ServingService):
    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def list_endpoints(self) -> list[EndpointStatus]:
        return [EndpointStatus.model_validate(e) for e in self.http.request("GET", P)]

    def get_endpoint(self, name: str) -> EndpointStatus:
        return EndpointStatus.model_validate(self.http.request("GET", f"{P}/{_name(name)}"))

    def get_traffic_policy(self, name: str) -> TrafficPolicy:
        return TrafficPolicy.model_validate(self.http.request("GET", f"{P}/{_name(name)}/policy"))

    def set_traffic_policy(
        self, name: str, policy: TrafficPolicy | dict[str, Any]
    ) -> TrafficPolicy:
        body = policy.model_dump(mode="json") if isinstance(policy, TrafficPolicy) else policy
        return TrafficPolicy.model_validate(
            self.http.request("PUT", f"{P}/{_name(name)}/policy", json=body)
        )

    def _job(self, method: str, path: str, body: Any = None) -> ScoringJob:
        return ScoringJob.model_validate(self.http.request(method, path, json=body))

    def start_batch_job(self, spec: BatchJobSpec | dict[str, Any]) -> ScoringJob:
        body = spec.model_dump(mode="json") if isinstance(spec, BatchJobSpec) else spec
        return self._job("POST", f"{J}/batch", body)

    def start_stream_job(self, spec: StreamJobSpec | dict[str, Any]) -> ScoringJob:
        body = spec.model_dump(mode="json") if isinstance(spec, StreamJobSpec) else spec
        return self._job("POST", f"{J}/stream", body)

    def list_jobs(self, max_results: int = 100, page_token: str | None = None) -> Page[ScoringJob]:
        params = {"max_results": max_results, "page_token": page_token}
        answer = self.http.request("GET", J, params={k: v for k, v in params.items() if v})
        return Page[ScoringJob].model_validate(answer)

    def get_job(self, job_id: str) -> ScoringJob:
        return self._job("GET", f"{J}/{quote(job_id, safe='')}")

    def cancel_job(self, job_id: str) -> ScoringJob:
        return self._job("POST", f"{J}/{quote(job_id, safe='')}/cancel")

    def delete_job(self, job_id: str) -> None:
        self.http.request("DELETE", f"{J}/{quote(job_id, safe='')}")
