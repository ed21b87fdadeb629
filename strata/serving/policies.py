"""Runtime traffic policies, stored where every worker of every server can read them:
``serving/policies/<endpoint>.json`` in the artifact store (written by the serving service,
audited there; read by each worker's alias/policy poll)."""

from __future__ import annotations

from typing import Any

from strata.core.errors import NotFound
from strata.serving.models import EndpointStatus, TrafficPolicy, check_endpoint_name

PREFIX = "serving/policies"
ENDPOINTS = "serving/endpoints"


def policy_path(endpoint: str) -> str:
    return f"{PREFIX}/{check_endpoint_name(endpoint)}.json"


def read_policy(store: Any, endpoint: str) -> TrafficPolicy | None:
    """The stored policy of ``endpoint``; None when none was set at runtime."""
    try:
        data = store.get_bytes(policy_path(endpoint))
    except NotFound:
        return None
    return TrafficPolicy.model_validate_json(data)


def write_policy(store: Any, endpoint: str, policy: TrafficPolicy) -> None:
    store.put_bytes(policy_path(endpoint), policy.model_dump_json().encode())


def publish_status(store: Any, status: EndpointStatus) -> None:
    """A worker's report of one endpoint (what ``list_endpoints`` reads)."""
    path = f"{ENDPOINTS}/{check_endpoint_name(status.name)}.json"
    store.put_bytes(path, status.model_dump_json().encode())
