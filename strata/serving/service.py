"""The serving interface (``client.serving``), embedded and remote alike: the endpoints
inference servers publish, and their traffic policies.

Running ``strata serve`` workers publish each endpoint's status (version served, ready,
errors, the policy in force) to the artifact store; a policy set here is stored there and
picked up by every worker's next poll (``poll_seconds``), after the models it names are
loaded. Setting a policy is audited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from strata.serving.models import EndpointStatus, TrafficPolicy


class ServingService(ABC):
    @abstractmethod
    def list_endpoints(self) -> list[EndpointStatus]:
        """The endpoints inference servers published, by name (the latest report of each)."""

    @abstractmethod
    def get_endpoint(self, name: str) -> EndpointStatus:
        """One endpoint; NotFound naming the known endpoints."""

    @abstractmethod
    def get_traffic_policy(self, name: str) -> TrafficPolicy:
        """The policy set at runtime, else the one the endpoint reports; NotFound."""

    @abstractmethod
    def set_traffic_policy(
        self, name: str, policy: TrafficPolicy | dict[str, Any]
    ) -> TrafficPolicy:
        """Store ``policy`` for endpoint ``name`` (canary weights, shadow, fallback, cache),
        audited; servers apply it at their next poll. NotFound for an unknown endpoint,
        InvalidInput naming the field for a malformed policy."""
