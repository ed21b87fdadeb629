"""The serving contract: published endpoints and traffic policies, the same tests on the
embedded and the remote client (SQLite and PostgreSQL metadata). Endpoint reports are
published into the artifact store as a running `strata serve` worker does."""

from __future__ import annotations

import pytest
from registry_helpers import exactly

from strata.backends.artifacts import ArtifactStore
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound
from strata.serving.models import EndpointStatus, TrafficPolicy
from strata.serving.policies import publish_status


def _publish(settings: Settings, name: str = "flights", version: str = "3") -> None:
    status = EndpointStatus(
        name=name, model=f"{name}@production", version=version, ready=True, flavor="lightgbm"
    )
    publish_status(ArtifactStore(settings.artifact_uri), status)


def test_endpoints_published_by_servers(client: Client, settings: Settings) -> None:
    assert client.serving.list_endpoints() == []
    _publish(settings)
    _publish(settings, "churn", "1")
    assert [e.name for e in client.serving.list_endpoints()] == ["churn", "flights"]
    flights = client.serving.get_endpoint("flights")
    assert (flights.version, flights.ready, flights.model) == ("3", True, "flights@production")
    err = exactly(NotFound, client.serving.get_endpoint, "nope")
    assert err.details["known"] == ["churn", "flights"]
    exactly(InvalidInput, client.serving.get_endpoint, "../etc")


def test_traffic_policy_round_trip_and_audit(client: Client, settings: Settings) -> None:
    _publish(settings)
    assert client.serving.get_traffic_policy("flights") == TrafficPolicy()
    policy = {
        "canary": [{"model": "flights/4", "weight": 0.1}],
        "sticky_key": "field:tailnum",
        "shadow": {"model": "flights@challenger", "fraction": 0.5},
        "fallback": {"model": "flights/2", "timeout_ms": 50},
        "cache": {"max_entries": 100, "ttl_seconds": 5},
    }
    got = client.serving.set_traffic_policy("flights", policy)
    assert got == TrafficPolicy.model_validate(policy)
    assert client.serving.get_traffic_policy("flights") == got
    assert client.serving.set_traffic_policy("flights", TrafficPolicy()) == TrafficPolicy()
    assert client.serving.get_traffic_policy("flights").canary == []
    records = client.governance.list_audit(action="serving.set_traffic_policy")
    assert len(records) == 2 and records[0].resource_id == "flights"


@pytest.mark.parametrize(
    "bad",
    [
        {"canary": [{"model": "flights/4", "weight": 0.7}, {"model": "flights/5", "weight": 0.6}]},
        {"canary": [{"model": "not a ref", "weight": 0.1}]},
        {"sticky_key": "cookie:x"},
        {"shadow": {"model": "flights/2", "fraction": 2}},
        {"surprise": 1},
    ],
)
def test_bad_policies_are_refused(
    client: Client, settings: Settings, bad: dict[str, object]
) -> None:
    _publish(settings)
    exactly(InvalidInput, client.serving.set_traffic_policy, "flights", bad)
    assert client.serving.get_traffic_policy("flights") == TrafficPolicy()


def test_policy_of_an_unknown_endpoint(client: Client) -> None:
    exactly(NotFound, client.serving.set_traffic_policy, "ghost", {})
    exactly(NotFound, client.serving.get_traffic_policy, "ghost")
