"""Runtime traffic policies, stored where every worker of every server can read them:
``serving/policies/<endpoint>.json`` in the artifact store (written by the serving service,
audited there; read by each worker's alias/policy poll)."""

from __future__ import annotations

import json
from typing import Any

from strata.core.errors import InvalidInput, NotFound
from strata.serving.models import EndpointStatus, TrafficPolicy, check_endpoint_name

PREFIX = "serving/policies"
ENDPOINTS = "serving/endpoints"
SAMPLING = "serving/sampling"


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


def sampling_path(model: str) -> str:
    return f"{SAMPLING}/{check_endpoint_name(model)}.json"


def read_sample_rate(store: Any, model: str) -> float | None:
    """The share (0-1) of ``model``'s requests the prediction log keeps, as monitoring set
    it (``strata monitor log-settings MODEL --sample-rate``); None when never set (all)."""
    try:
        data = store.get_bytes(sampling_path(model))
    except NotFound:
        return None
    rate = float(json.loads(data)["sample_rate"])
    if not 0.0 <= rate <= 1.0:
        raise InvalidInput(f"{sampling_path(model)}: sample_rate {rate} is not within 0-1")
    return rate


def write_sample_rate(store: Any, model: str, rate: float) -> None:
    """Store ``model``'s prediction log sampling rate where every serving worker's poll reads
    it (monitoring, above serving in the layers, writes it through this function)."""
    if not 0.0 <= rate <= 1.0:
        raise InvalidInput(
            f"sample_rate must be within 0 and 1, not {rate}", details={"field": "sample_rate"}
        )
    store.put_bytes(sampling_path(model), json.dumps({"sample_rate": rate}).encode())


def publish_status(store: Any, status: EndpointStatus) -> None:
    """A worker's report of one endpoint (what ``list_endpoints`` reads)."""
    path = f"{ENDPOINTS}/{check_endpoint_name(status.name)}.json"
    store.put_bytes(path, status.model_dump_json().encode())
