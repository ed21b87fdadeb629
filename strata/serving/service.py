"""The serving interface (``client.serving``), embedded and remote alike: the endpoints
inference servers publish, and their traffic policies.

Running ``strata serve`` workers publish each endpoint's status (version served, ready,
errors, the policy in force) to the artifact store; a policy set here is stored there and
picked up by every worker's next poll (``poll_seconds``), after the models it names are
loaded. Setting a policy is audited.

Scoring jobs (:mod:`strata.serving.jobs`): a batch or stream scoring job started here runs in
the process that serves the call (the server, for a remote client), listed and cancelled from
any of its workers; starting and cancelling are audited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from strata.core.page import Page
from strata.serving.models import (
    BatchJobSpec,
    EndpointStatus,
    ScoringJob,
    StreamJobSpec,
    TrafficPolicy,
)


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

    @abstractmethod
    def start_batch_job(self, spec: BatchJobSpec | dict[str, Any]) -> ScoringJob:
        """Start scoring a dataset version with a registered model into a new dataset
        version (see :class:`BatchJobSpec`); returns the running job at once. InvalidInput
        naming the field for a bad spec; Unavailable when the server runs its limit of jobs."""

    @abstractmethod
    def start_stream_job(self, spec: StreamJobSpec | dict[str, Any]) -> ScoringJob:
        """Start a stream scorer (see :class:`StreamJobSpec`); PermissionDenied for a broker
        the server is not configured with."""

    @abstractmethod
    def list_jobs(self, max_results: int = 100, page_token: str | None = None) -> Page[ScoringJob]:
        """Scoring jobs started through this service, newest first, ``max_results`` (1..1000)
        a page; pass ``next_page_token`` back as ``page_token`` for the next page (None at
        the end). InvalidInput for a token no page returned."""

    @abstractmethod
    def get_job(self, job_id: str) -> ScoringJob:
        """One job with its progress and, when done, its result or error; NotFound."""

    @abstractmethod
    def cancel_job(self, job_id: str) -> ScoringJob:
        """Ask a running job to stop (a batch job keeps its finished chunks: starting it
        again resumes); a finished job is returned unchanged. NotFound."""

    @abstractmethod
    def delete_job(self, job_id: str) -> None:
        """Remove a finished job's record (what it wrote, a dataset version or a topic's
        messages, stays); audited. Conflict while it runs (cancel it first); NotFound."""
