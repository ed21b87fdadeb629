"""The serving service on the local stores: endpoint reports and policies in the artifact
store (``serving/endpoints/``, ``serving/policies/``), policy changes audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from strata.backends.context import Backends
from strata.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from strata.core.page import Page, decode_position, encode_position
from strata.governance.audit import audited
from strata.serving.jobs import (
    SERVER_STOPPED,
    JobRunner,
    JobStore,
    allowed_stream_hosts,
    check_datasets,
    check_stream_uri,
    order_key,
    orphaned,
    spec_error,
)
from strata.serving.models import (
    BatchJobSpec,
    EndpointStatus,
    JobKind,
    ScoringJob,
    StreamJobSpec,
    TrafficPolicy,
    check_endpoint_name,
    parse_ref,
    policy_refs,
)
from strata.serving.policies import read_policy, read_status, read_statuses, write_policy
from strata.serving.service import ServingService

#: A job list's page token: the creation time (µs) and id of the last job of the page before.
_JOB_POSITION: dict[str, type] = {"before_us": int, "before_id": str}


class EmbeddedServing(ServingService):
    def __init__(self, backends: Backends, peers: Any = None) -> None:
        self.backends = backends
        self.peers = peers
        """The Client whose data, tracking and registry services scoring jobs use."""
        self._runner: JobRunner | None = None

    # -- scoring jobs ------------------------------------------------------------------
    @property
    def _jobs(self) -> JobStore:
        return JobStore(self.backends.artifacts)

    def _start(self, kind: JobKind, spec: BatchJobSpec | StreamJobSpec) -> ScoringJob:
        from strata.core.principal import current

        if self.peers is None:
            raise Unavailable("Scoring jobs need a Client: use strata.Client().serving")
        if self._runner is None:
            self._runner = JobRunner(self._jobs, self.peers)
        job = self._runner.create(kind, spec, current().principal.name)
        details = {"kind": kind, "spec": job.spec}
        with audited(self.backends.db, "serving.start_job", "scoring_job", job.id, details):
            return self._runner.launch(job, spec)

    def start_batch_job(self, spec: BatchJobSpec | dict[str, Any]) -> ScoringJob:
        if not isinstance(spec, BatchJobSpec):
            try:
                spec = BatchJobSpec.model_validate(spec)
            except ValidationError as exc:
                raise spec_error(exc, "batch scoring job") from None
        check_datasets(spec)
        self._check_executor(spec)
        self._check_exists(spec.model, spec.input)
        return self._start("batch", spec)

    def _check_executor(self, spec: BatchJobSpec) -> None:
        """A job runs on the server: ``ray`` only on the Ray cluster the server is configured
        with (never a local cluster it would start), at most one worker per CPU."""
        import os

        if spec.executor == "ray" and not self.backends.settings.executor_uri.startswith("ray"):
            raise InvalidInput(
                "executor: 'ray' needs a server configured with a Ray cluster "
                "(STRATA_EXECUTOR_URI=ray://HOST:PORT); this one runs 'local' or 'inline'",
                details={"field": "executor"},
            )
        cpus = os.cpu_count() or 1
        if spec.workers is not None and spec.workers > cpus:
            raise InvalidInput(
                f"workers: at most {cpus} on this server (its CPUs), got {spec.workers}",
                details={"field": "workers", "max": cpus},
            )

    def _check_exists(self, model: str, dataset: str | None = None) -> None:
        """NotFound / InvalidInput now, to the caller, for an unknown model version or
        dataset version (not a job that fails later)."""
        from strata.serving.batch_model import registered_version

        if self.peers is None:
            raise Unavailable("Scoring jobs need a Client: use strata.Client().serving")
        registered_version(self.peers, model)
        if dataset is not None:
            self.peers.data.get_version(dataset)

    def start_stream_job(self, spec: StreamJobSpec | dict[str, Any]) -> ScoringJob:
        if not isinstance(spec, StreamJobSpec):
            try:
                spec = StreamJobSpec.model_validate(spec)
            except ValidationError as exc:
                raise spec_error(exc, "stream scoring job") from None
        allowed = allowed_stream_hosts(self.backends.settings.stream_uri)
        check_stream_uri(spec.source, "source", allowed)
        check_stream_uri(spec.sink, "sink", allowed)
        self._check_exists(spec.model)
        return self._start("stream", spec)

    def list_jobs(self, max_results: int = 100, page_token: str | None = None) -> Page[ScoringJob]:
        if not 1 <= max_results <= 1000:
            raise InvalidInput(
                f"max_results must be 1..1000, got {max_results}", details={"field": "max_results"}
            )
        after = decode_position(page_token, _JOB_POSITION)
        jobs = self._jobs.list()  # newest first, then by id: a total order
        start = 0
        if after is not None:  # keyset: the jobs after the last one shown, whatever started since
            last = (after["before_us"], after["before_id"])
            start = next((i for i, j in enumerate(jobs) if order_key(j) < last), len(jobs))
        page = jobs[start : start + max_results]
        following = None
        if start + max_results < len(jobs):
            at, job_id = order_key(page[-1])
            following = encode_position({"before_us": at, "before_id": job_id})
        return Page[ScoringJob](items=page, next_page_token=following)

    def get_job(self, job_id: str) -> ScoringJob:
        return self._jobs.get(job_id)

    def cancel_job(self, job_id: str) -> ScoringJob:
        job = self._jobs.read(job_id)
        if orphaned(job):  # no process would act on a cancel marker: record the end here
            with audited(self.backends.db, "serving.cancel_job", "scoring_job", job_id, {}):
                job.state, job.error = "cancelled", SERVER_STOPPED
                job.cancel_requested, job.finished_at = True, datetime.now(UTC)
                self._jobs.request_cancel(job_id)  # should its process live after all: stop
                self._jobs.save(job)
            return job
        if job.state != "running":
            return self._jobs.get(job_id)
        with audited(self.backends.db, "serving.cancel_job", "scoring_job", job_id, {}):
            self._jobs.request_cancel(job_id)
        return self._jobs.get(job_id)

    def delete_job(self, job_id: str) -> None:
        job = self._jobs.get(job_id)  # NotFound in its words; a dead process's job: failed
        if job.state == "running":
            raise Conflict(
                f"Scoring job {job_id} is running; cancel it first "
                f"(POST /api/v1/serving/jobs/{job_id}/cancel, `strata serving jobs cancel`)",
                details={"job": job_id, "state": job.state},
            )
        with audited(self.backends.db, "serving.delete_job", "scoring_job", job_id, {}):
            self._jobs.delete(job_id)

    def list_endpoints(self) -> list[EndpointStatus]:
        return read_statuses(self.backends.artifacts)

    def get_endpoint(self, name: str) -> EndpointStatus:
        check_endpoint_name(name)
        status = read_status(self.backends.artifacts, name)
        if status is None:
            known = [s.name for s in self.list_endpoints()]
            raise NotFound(
                f"No endpoint {name!r} has been published by an inference server; known: "
                f"{', '.join(known) or 'none'}",
                details={"endpoint": name, "known": known},
            )
        return status

    def get_traffic_policy(self, name: str) -> TrafficPolicy:
        status = self.get_endpoint(name)
        stored = read_policy(self.backends.artifacts, name)
        return stored if stored is not None else status.policy

    def set_traffic_policy(
        self, name: str, policy: TrafficPolicy | dict[str, Any]
    ) -> TrafficPolicy:
        if not isinstance(policy, TrafficPolicy):
            try:
                policy = TrafficPolicy.model_validate(policy)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "policy"
                raise InvalidInput(
                    f"Invalid traffic policy: {where}: {first['msg']}", details={"field": where}
                ) from None
        self.get_endpoint(name)
        for field, ref in policy_refs(policy):
            if not parse_ref(ref).registered:
                raise InvalidInput(
                    f"{field}: {ref!r} is not a registered model; a traffic policy set at "
                    "runtime names registered models only (NAME@ALIAS, NAME/VERSION or NAME): "
                    "directories and runs:/ references belong in the endpoint's config file",
                    details={"field": field, "received": ref},
                )
        details = {"policy": policy.model_dump(mode="json")}
        with audited(self.backends.db, "serving.set_traffic_policy", "endpoint", name, details):
            write_policy(self.backends.artifacts, name, policy)
        return policy
