"""Which tracking service the fluent API talks to, and experiment lookup by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from strata.backends.context import Backends
from strata.core.config import load_settings
from strata.core.errors import AlreadyExists, InvalidInput, NotFound
from strata.core.transport import HttpTransport
from strata.tracking.service import TrackingService

_default: tuple[tuple[str, str, str], TrackingService] | None = None


@runtime_checkable
class HasTracking(Protocol):
    """Anything with a ``tracking`` service, e.g. :class:`strata.Client`."""

    @property
    def tracking(self) -> TrackingService: ...


def default_tracking() -> TrackingService:
    """The tracking service of ``strata.Client()``: remote when STRATA_URI is set, else embedded
    on STRATA_HOME. Re-created when those settings change."""
    global _default
    settings = load_settings()
    key = (settings.uri, settings.db_uri, settings.artifact_uri)
    if _default is not None and _default[0] == key:
        return _default[1]
    service: TrackingService
    if settings.uri:
        if not settings.uri.startswith(("http://", "https://")):
            raise InvalidInput(
                f"STRATA_URI must be http:// or https://, got {settings.uri!r}",
                details={"field": "uri"},
            )
        token = settings.token.get_secret_value() if settings.token else None
        from strata.tracking.remote import RemoteTracking

        service = RemoteTracking(HttpTransport(settings.uri, token))
    else:
        from strata.tracking.embedded import EmbeddedTracking

        service = EmbeddedTracking(Backends(settings))
    close_default(())
    _default = (key, service)
    return service


def close_default(live: Iterable[Any] = ()) -> None:
    """Close the default service, unless a run still logs through it."""
    global _default
    if _default is None:
        return
    service = _default[1]
    _default = None
    if any(run.tracking is service for run in live):
        return
    backends, http = getattr(service, "backends", None), getattr(service, "http", None)
    if isinstance(backends, Backends):
        backends.close()
    elif isinstance(http, HttpTransport):
        http.close()


def resolve(client: TrackingService | HasTracking | None) -> TrackingService:
    if client is None:
        return default_tracking()
    if isinstance(client, TrackingService):
        return client
    if isinstance(client, HasTracking):
        return client.tracking
    raise InvalidInput(
        f"client must be a strata.Client or a TrackingService, got {type(client).__name__}",
        details={"field": "client"},
    )


def experiment_id_for(service: TrackingService, name: str) -> str:
    """The id of the experiment called ``name``, creating it when missing."""
    try:
        return service.get_experiment_by_name(name).experiment_id
    except NotFound:
        try:
            return service.create_experiment(name).experiment_id
        except AlreadyExists:  # another process created it meanwhile
            return service.get_experiment_by_name(name).experiment_id


def forget_default() -> None:
    """Drop the default service without closing it (in a forked child)."""
    global _default
    _default = None
