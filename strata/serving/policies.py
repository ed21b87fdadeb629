"""Runtime traffic policies, stored where every worker of every server can read them:
``serving/policies/<endpoint>.json`` in the artifact store (written by the serving service,
audited there; read by each worker's alias/policy poll)."""

from __future__ import annotations

import json
import logging
import re
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from strata.core.errors import InvalidInput, NotFound
from strata.serving.models import EndpointStatus, TrafficPolicy, check_endpoint_name

log = logging.getLogger("strata.serving")

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


REPORT_WINDOW = timedelta(seconds=90)
"""Reports of an endpoint this much older than its newest one (or three times the slowest
``report_seconds`` its reports state, when longer) are not its live workers': they are left
out of the merged status."""
REPORT_KEEP = timedelta(days=7)
"""A worker's report older than this is deleted when a worker starts reporting the endpoint."""


def _report_dir(endpoint: str) -> str:
    return f"{ENDPOINTS}/{check_endpoint_name(endpoint)}"


def _report_name(server: str | None) -> str:
    """A worker's report file name from its ``host:pid``: only letters, digits, ``._-``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", server or "worker")[:200] + ".json"


def publish_status(store: Any, status: EndpointStatus, *, first: bool = False) -> None:
    """A worker's report of one endpoint: ``serving/endpoints/<name>/<host_pid>.json``, one
    file per worker (:func:`read_status` merges them). ``first``: the worker's first report
    of the endpoint, which deletes reports older than :data:`REPORT_KEEP` (workers gone)."""
    folder = _report_dir(status.name)
    if first:
        now = datetime.now(UTC)
        for path, old in _reports(store, folder):
            if old.updated_at is not None and now - old.updated_at > REPORT_KEEP:
                with suppress(NotFound):
                    store.delete(path)
    store.put_bytes(f"{folder}/{_report_name(status.server)}", status.model_dump_json().encode())


def _reports(store: Any, folder: str) -> list[tuple[str, EndpointStatus]]:
    """The reports in ``folder`` with their paths; a file that is not a report (unreadable,
    not a status) is logged and left out, never failing the listing."""
    try:
        infos = store.list(folder)
    except (NotFound, InvalidInput):
        return []
    out = []
    for info in infos:
        if info.is_dir or not info.path.endswith(".json"):
            continue
        try:
            out.append((info.path, _read_report(store.get_bytes(info.path))))
        except NotFound:  # deleted since listed
            continue
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.warning("serving: %s is not an endpoint report, left out: %s", info.path, exc)
    return out


def _read_report(data: bytes) -> EndpointStatus:
    """A report; one whose policy this release cannot read (a newer worker's, with fields
    this one does not know, during a rolling upgrade) is read without it, and says so."""
    try:
        return EndpointStatus.model_validate_json(data)
    except ValueError:
        doc = json.loads(data)
        if not isinstance(doc, dict) or "policy" not in doc:
            raise
        known = doc.get("policy_errors")
        errors: dict[str, Any] = known if isinstance(known, dict) else {}
        note = "written by a newer release: not shown by this one"
        return EndpointStatus.model_validate(
            {**doc, "policy": {}, "policy_errors": {**errors, "policy": note}}
        )


def read_status(store: Any, endpoint: str) -> EndpointStatus | None:
    """``endpoint`` as its live workers report it (:func:`merge_reports`); None when no
    worker ever reported it. A report of an older release (one file for the endpoint,
    ``serving/endpoints/<name>.json``) counts as one worker's."""
    reports = [status for _, status in _reports(store, _report_dir(endpoint))]
    with suppress(NotFound, ValueError):
        legacy = store.get_bytes(f"{_report_dir(endpoint)}.json")
        reports.append(EndpointStatus.model_validate_json(legacy))
    return merge_reports(reports) if reports else None


def read_statuses(store: Any) -> list[EndpointStatus]:
    """Every endpoint a worker reported (:func:`read_status`), by name."""
    if not store.exists(ENDPOINTS):
        return []
    names = set()
    for info in store.list(ENDPOINTS):
        name = info.path.rsplit("/", 1)[-1]
        if not info.is_dir:
            name = name.removesuffix(".json") if name.endswith(".json") else ""
        with suppress(InvalidInput):  # anything else there is not an endpoint's
            names.add(check_endpoint_name(name))
    statuses = [read_status(store, name) for name in sorted(names)]
    return [s for s in statuses if s is not None]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reported_at(report: EndpointStatus) -> datetime:
    """When ``report`` was made (the epoch for one that does not say)."""
    return report.updated_at or _EPOCH


def merge_reports(reports: list[EndpointStatus]) -> EndpointStatus:
    """One endpoint's status from its workers' reports: the newest report's view (version,
    policy, readiness, ...), with the counts of every live worker (reported within
    :data:`REPORT_WINDOW` of the newest) added up, ``ready`` only when all of them are, the
    first error among them, and ``workers`` their number."""
    reports = sorted(reports, key=_reported_at)
    newest = reports[-1]
    every = max((r.report_seconds or 0.0 for r in reports), default=0.0)
    since = _reported_at(newest) - max(REPORT_WINDOW, timedelta(seconds=3 * every))
    live = [r for r in reports if _reported_at(r) >= since]
    stats: dict[str, float] = {}
    for report in live:
        for key, value in report.stats.items():
            stats[key] = stats.get(key, 0.0) + value
    errors = [r.error for r in live if r.error]
    policy_errors: dict[str, str] = {}
    for report in live:
        policy_errors.update(report.policy_errors)
    return newest.model_copy(
        update={
            "ready": all(r.ready for r in live),
            "error": errors[0] if errors else None,
            "stats": stats,
            "policy_errors": policy_errors,
            "workers": len(live),
        }
    )
