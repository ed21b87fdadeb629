"""The serving interface over HTTP (``strata.Client("http://...").serving``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from strata.core.transport import HttpTransport
from strata.serving.models import EndpointStatus, TrafficPolicy, check_endpoint_name
from strata.serving.service import ServingService

P = "/api/v1/serving/endpoints"


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
