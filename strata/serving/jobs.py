"""Scoring jobs started through the serving service (REST ``/api/v1/serving/jobs``, the UI):
a batch scoring job (:func:`~strata.serving.batch.score_batch`) or a stream scorer
(:func:`~strata.serving.stream.score_stream`) run in a thread of the process that was asked,
with their state in the artifact store (``serving/jobs/<id>.json``) so every worker of every
server lists them, and a cancel asked of any worker reaches the one running it (a
``serving/jobs/<id>.cancel`` marker its progress callback reads).

What a job spec may name is narrower than the CLI's, because an editor sends it to a server:
models by registry reference only (``NAME@ALIAS``, ``NAME/VERSION``, ``NAME``: never a
directory or a run's path on the server), datasets by name, stream URIs only on the brokers
the server is configured with (``stream_uri`` and ``STRATA_SCORING_STREAM_HOSTS``) and with no
client-library settings (a librdkafka setting can name files to read or plugins to load); no
``trusted`` (a pickle's code never runs for a job) and no Ray address.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, NotFound, PermissionDenied, StrataError
from strata.serving.models import BatchJobSpec, JobKind, ScoringJob, StreamJobSpec

log = logging.getLogger("strata.serving")

PREFIX = "serving/jobs"
HOSTS_ENV = "STRATA_SCORING_STREAM_HOSTS"
_ID_CHARS = frozenset("0123456789abcdef")
HEARTBEAT_S = 10.0
"""How often a running job records that its process is alive."""
STALE_S = 120.0
"""A running job of another host whose heartbeat is older than this is shown failed."""
SERVER_STOPPED = "server stopped: the process running this job is gone"


def shown_spec(spec: BatchJobSpec | StreamJobSpec) -> dict[str, Any]:
    """``spec`` as stored, listed and audited: stream URIs with their passwords and secret
    settings replaced by ``***`` (the raw spec stays in the job thread's memory only)."""
    out = spec.model_dump(mode="json")
    for field in ("source", "sink"):
        if isinstance(out.get(field), str):
            out[field] = redact_uri(out[field])
    return out


def orphaned(job: ScoringJob, *, now: datetime | None = None) -> bool:
    """Whether ``job`` says running but no process runs it: its process on this host is gone,
    or (another host's) its heartbeat is older than :data:`STALE_S`."""
    if job.state != "running":
        return False
    host, _, pid = (job.server or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and os.name == "posix":  # signal 0
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, another user's: EPERM
            return False
        return False
    beat = job.heartbeat_at or job.created_at
    return ((now or datetime.now(UTC)) - beat).total_seconds() > STALE_S


def allowed_stream_hosts(stream_uri: str) -> set[str]:
    """``host:port`` of the brokers stream jobs may use: the configured stream backend's and
    those listed in ``STRATA_SCORING_STREAM_HOSTS`` (comma-separated)."""
    hosts = {h.strip().lower() for h in os.environ.get(HOSTS_ENV, "").split(",") if h.strip()}
    parts = urlsplit(stream_uri)
    if parts.scheme.lower() in ("kafka", "redis", "rediss"):
        for host in parts.netloc.rpartition("@")[2].split(","):
            if host:
                hosts.add(host.lower())
    return hosts


def check_datasets(spec: BatchJobSpec) -> None:
    """InvalidInput naming the field unless ``input`` is a dataset reference
    (``NAME[@VERSION]``) and ``output`` a dataset name: never a path or a URI."""
    from strata.data.models import check_name
    from strata.data.models import parse_ref as dataset_ref

    for field, check in (("input", dataset_ref), ("output", check_name)):
        try:
            check(getattr(spec, field))
        except InvalidInput as exc:
            raise InvalidInput(
                f"Invalid batch scoring job: {field}: {exc.message}", details={"field": field}
            ) from None


def check_stream_uri(uri: str, field: str, allowed: set[str]) -> None:
    """InvalidInput for a malformed URI or one carrying client settings; PermissionDenied
    for a broker the server is not configured with."""
    from urllib.parse import parse_qsl

    from strata.backends.streams import _REDIS_OPTIONS, parse_stream_uri

    settings: dict[str, str] = getattr(parse_stream_uri(uri), "options", None) or {}
    if urlsplit(uri).scheme.lower() in ("redis", "rediss"):  # the rest go to redis-py
        query = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
        settings = {k: v for k, v in query if k not in _REDIS_OPTIONS}
    if settings:
        raise InvalidInput(
            f"{field}: a job's stream URI takes no client settings ({', '.join(settings)})"
            " — they could name files or plugins on the server",
            details={"field": field},
        )
    parts = urlsplit(uri)
    hosts = [h.lower() for h in parts.netloc.rpartition("@")[2].split(",") if h]
    refused = [h for h in hosts if h not in allowed]
    if refused:
        raise PermissionDenied(
            f"{field}: broker {refused[0]} is not one this server is configured with "
            f"(its stream_uri, or {HOSTS_ENV}); allowed: {', '.join(sorted(allowed)) or 'none'}",
            details={"field": field, "allowed": sorted(allowed)},
        )


class JobStore:
    """Jobs' JSON files in the artifact store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def path(self, job_id: str, suffix: str = "json") -> str:
        if not (8 <= len(job_id) <= 64 and set(job_id) <= _ID_CHARS):
            raise NotFound(f"No scoring job {job_id!r}", details={"job": job_id[:80]})
        return f"{PREFIX}/{job_id}.{suffix}"

    def save(self, job: ScoringJob) -> None:
        self.store.put_bytes(self.path(job.id), job.model_dump_json().encode())

    def get(self, job_id: str) -> ScoringJob:
        path = self.path(job_id)
        try:
            data = self.store.get_bytes(path)
        except NotFound:
            raise NotFound(
                f"No scoring job {job_id!r}; list them with GET /api/v1/serving/jobs",
                details={"job": job_id},
            ) from None
        job = ScoringJob.model_validate_json(data)
        if orphaned(job):
            job.state, job.error = "failed", SERVER_STOPPED
        elif job.state == "running" and self.cancelled(job_id):
            job.cancel_requested = True
        return job

    def read(self, job_id: str) -> ScoringJob:
        """The job as stored (:meth:`get` shows a job whose process is gone as failed)."""
        try:
            return ScoringJob.model_validate_json(self.store.get_bytes(self.path(job_id)))
        except NotFound:
            return self.get(job_id)  # its message

    def list(self) -> list[ScoringJob]:
        if not self.store.exists(PREFIX):
            return []
        out = []
        for info in self.store.list(PREFIX):
            if info.is_dir or not info.path.endswith(".json"):
                continue
            try:
                out.append(self.get(info.path.rsplit("/", 1)[-1].removesuffix(".json")))
            except NotFound:  # deleted since the store listed it: not a job any more
                continue
        return sorted(out, key=order_key, reverse=True)

    def delete(self, job_id: str) -> None:
        """Remove the job's record and its cancel marker (NotFound when there is none)."""
        self.store.delete(self.path(job_id))
        if self.cancelled(job_id):
            self.store.delete(self.path(job_id, "cancel"))

    def request_cancel(self, job_id: str) -> None:
        self.store.put_bytes(self.path(job_id, "cancel"), b"{}")

    def cancelled(self, job_id: str) -> bool:
        return bool(self.store.exists(self.path(job_id, "cancel")))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def order_key(job: ScoringJob) -> tuple[int, str]:
    """Where a job sorts in the list (newest first: descending): its creation time in
    microseconds since the epoch, then its id (a total order, for keyset paging)."""
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return (created - _EPOCH) // _MICROSECOND, job.id


class JobRunner:
    """Runs jobs in threads of this process (at most ``max_running`` at once)."""

    def __init__(self, store: JobStore, services: Any, *, max_running: int = 2) -> None:
        self.jobs = store
        self.services = services
        self.max_running = max_running
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def running(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._threads.values())

    def create(
        self, kind: JobKind, spec: BatchJobSpec | StreamJobSpec, who: str | None
    ) -> ScoringJob:
        """A new job record (not stored or started yet: :meth:`launch`); Unavailable when
        this process runs its limit of jobs."""
        from strata.core.errors import Unavailable

        if self.running() >= self.max_running:
            raise Unavailable(
                f"This server already runs {self.max_running} scoring jobs; retry when one "
                "has finished (or cancel one)",
                details={"max_running": self.max_running},
            )
        now = datetime.now(UTC)
        return ScoringJob(
            id=uuid.uuid4().hex,
            kind=kind,
            spec=shown_spec(spec),
            created_by=who,
            created_at=now,
            heartbeat_at=now,
            server=f"{socket.gethostname()}:{os.getpid()}",
        )

    def launch(self, job: ScoringJob, spec: BatchJobSpec | StreamJobSpec) -> ScoringJob:
        """Store ``job`` and run it in a thread, as the caller (its principal and request id:
        the job's reads, writes and audit records are the caller's, never the server's)."""
        self.jobs.save(job)
        ctx = contextvars.copy_context()
        thread = threading.Thread(
            target=ctx.run,
            args=(self._run, job, spec),
            name=f"strata-job-{job.id[:8]}",
            daemon=True,
        )
        with self._lock:
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
            self._threads[job.id] = thread
        thread.start()
        return job

    def _run(self, job: ScoringJob, spec: BatchJobSpec | StreamJobSpec) -> None:
        stop = threading.Event()
        last = [0.0]
        ended = threading.Event()
        saving = threading.Lock()

        def save() -> None:
            with saving:
                job.heartbeat_at = datetime.now(UTC)
                self.jobs.save(job)

        def heartbeat() -> None:
            """Record that this process still runs the job (a stream may wait idle)."""
            while not ended.wait(HEARTBEAT_S):
                try:
                    save()
                except Exception as exc:
                    log.warning("scoring job %s: could not record heartbeat: %s", job.id, exc)

        beat = threading.Thread(target=heartbeat, name=f"strata-job-beat-{job.id[:8]}")
        beat.daemon = True
        beat.start()

        def checkpoint(progress: dict[str, float]) -> None:
            """Pick up a cancel request; record progress (at most every 0.5 s)."""
            job.progress = progress
            try:
                if self.jobs.cancelled(job.id):  # a marker's existence: cheap at every chunk
                    stop.set()
                now = time.monotonic()
                if now - last[0] >= 0.5:
                    last[0] = now
                    save()
            except Exception as exc:  # progress is advisory: the job goes on
                log.warning("scoring job %s: could not record progress: %s", job.id, exc)

        try:
            if isinstance(spec, BatchJobSpec):
                result = _run_batch(self.services, spec, stop, checkpoint)
            else:
                result = _run_stream(self.services, spec, stop, checkpoint)
            job.result = result
            job.state = "cancelled" if stop.is_set() else "succeeded"
        except _Cancelled:
            job.state = "cancelled"
        except StrataError as exc:
            job.state, job.error = "failed", redact_uri(exc.message)
        except Exception as exc:  # logged without its traceback: its text may hold a URI
            job.state, job.error = "failed", redact_uri(f"{type(exc).__name__}: {exc}")
            log.error("scoring job %s failed: %s", job.id, job.error)
        ended.set()
        beat.join()
        job.finished_at = datetime.now(UTC)
        job.cancel_requested = job.state == "cancelled"
        try:
            save()
        except Exception:
            log.exception("scoring job %s: could not record its end", job.id)


class _Cancelled(Exception):
    """Raised in a job's thread when its cancel marker is seen: ends the job as cancelled."""


def _run_batch(
    services: Any,
    spec: BatchJobSpec,
    stop: threading.Event,
    checkpoint: Callable[[dict[str, float]], None],
) -> dict[str, Any]:
    from strata.serving.batch import BatchCancelled, score_batch

    def progress(done: int, total: int) -> None:
        checkpoint({"rows_done": done, "rows_total": total})

    options = spec.model_dump(exclude={"model", "input", "output"})
    try:
        result = score_batch(
            spec.model,
            spec.input,
            spec.output,
            client=services,
            progress=progress,
            stop=stop,
            **options,
        )
    except BatchCancelled:
        raise _Cancelled from None
    return result.model_dump(mode="json")


def _run_stream(
    services: Any,
    spec: StreamJobSpec,
    stop: threading.Event,
    checkpoint: Callable[[dict[str, float]], None],
) -> dict[str, Any]:
    from strata.serving.stream import StreamResult, score_stream

    def on_batch(_n: int, r: StreamResult) -> None:
        checkpoint({"records": r.records, "batches": r.batches, "errors": r.errors})

    options = spec.model_dump(exclude={"model", "source", "sink"})
    result = score_stream(
        spec.model,
        spec.source,
        spec.sink,
        client=services,
        stop=stop,
        on_batch=on_batch,
        **options,
    )
    return result.model_dump(mode="json")


def spec_error(exc: Exception, what: str) -> InvalidInput:
    """A pydantic error of a job spec as InvalidInput naming the field."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        message = str(first["msg"]).removeprefix("Value error, ")
        return InvalidInput(f"Invalid {what}: {where}: {message}", details={"field": where})
    return InvalidInput(f"Invalid {what}: {exc}")
