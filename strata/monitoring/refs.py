"""REFs (see :mod:`strata.monitoring.service`) parsed, and prediction-log windows as DuckDB
sources over the hive-partitioned Parquet that serving writes (docs/monitoring.md)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from strata.core.errors import InvalidInput
from strata.monitoring.models import check_name

LOG_PREFIX = "log:"
LABELS_PREFIX = "labels:"
PROFILE_PREFIX = "profile:"
PREDICTIONS = "predictions"
_LOG = re.compile(r"^log:(?P<model>[^@?]+)(?:@(?P<sel>[^?]+))?(?:\?(?P<query>.*))?$")
_LOG_KEYS = {"since", "until", "path", "endpoint"}


@dataclass(frozen=True)
class LogRef:
    """A window of a model's prediction log: ``selector`` an alias or version number (None:
    every version), [since, until) in UTC, optionally one serving ``path`` or ``endpoint``."""

    model: str
    selector: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    path: str | None = None
    endpoint: str | None = None


def parse_time(text: str, field: str) -> dt.datetime:
    """An ISO 8601 date or time; UTC when it has no offset. InvalidInput names ``field``."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 date or time such as 2013-07-01 or "
            f"2013-07-01T12:00:00Z, got {text!r}",
            details={"field": field},
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_log_ref(ref: str) -> LogRef:
    """``log:MODEL[@ALIAS|@VERSION][?since=...&until=...&path=...&endpoint=...]``."""
    m = _LOG.match(ref.strip())
    if not m:
        raise InvalidInput(
            f"a log REF is log:MODEL[@ALIAS|@VERSION][?since=...&until=...], got {ref!r}",
            details={"field": "ref"},
        )
    model = check_name(unquote(m["model"]), "model")
    selector = unquote(m["sel"]) if m["sel"] else None
    if selector is not None:
        check_name(selector, "alias")
    # not parse_qs: it reads '+' as a space, and '+00:00' is how an offset is written
    query: dict[str, list[str]] = {}
    for part in (m["query"] or "").split("&"):
        if part:
            key, _, value = part.partition("=")
            query.setdefault(unquote(key), []).append(unquote(value))
    unknown = sorted(set(query) - _LOG_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown log REF parameter {unknown[0]!r}; allowed: {', '.join(sorted(_LOG_KEYS))}",
            details={"field": unknown[0]},
        )
    one = {k: v[-1] for k, v in query.items()}
    since = parse_time(one["since"], "since") if one.get("since") else None
    until = parse_time(one["until"], "until") if one.get("until") else None
    if since and until and until <= since:
        raise InvalidInput(
            f"until ({until.isoformat()}) must be after since ({since.isoformat()})",
            details={"field": "until"},
        )
    return LogRef(model, selector, since, until, one.get("path") or None, one.get("endpoint"))


def format_log_ref(ref: LogRef) -> str:
    text = f"log:{ref.model}" + (f"@{ref.selector}" if ref.selector else "")
    params = []
    if ref.since:
        params.append(f"since={ref.since.isoformat()}")
    if ref.until:
        params.append(f"until={ref.until.isoformat()}")
    return text + ("?" + "&".join(params) if params else "")


def profile_name(ref: str) -> str:
    return check_name(ref[len(PROFILE_PREFIX) :].strip(), "profile")


def store_location(uri: str) -> str:
    """What DuckDB opens for a store URI: a local path or the ``s3://`` URL."""
    if uri.startswith("file:"):
        return unquote(urlsplit(uri).path)
    return uri


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
