"""Which tracking service the fluent API talks to, and experiment lookup by name.

The fluent API is built on the SDK like the CLI is: its default service is the ``tracking`` of
a :class:`strata.Client` built from the settings (``STRATA_URI`` selects remote mode), so
only ``Client`` decides between embedded and remote. A run keeps logging through the service
it started with; the data service beside it (for ``log_input`` of a dataset reference) is the
same Client's.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from strata.core.config import load_settings
from strata.core.errors import AlreadyExists, InvalidInput, NotFound
from strata.tracking.service import TrackingService

if TYPE_CHECKING:
    from strata.client import Client
    from strata.data.service import DataService

_default: tuple[tuple[str, str, str], Client] | None = None
#: The object (a Client) each tracking service was taken from, by the service's id.
_owners: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


@runtime_checkable
class HasTracking(Protocol):
    """Anything with a ``tracking`` service, e.g. :class:`strata.Client`."""

    @property
    def tracking(self) -> TrackingService: ...


def register_owner(service: TrackingService, owner: HasTracking) -> None:
    """Remember that ``service`` is ``owner.tracking`` (Client calls this when it builds it)."""
    _owners[id(service)] = owner


def default_client() -> Client:
    """``strata.Client()`` for the current settings, kept while they stay the same."""
    global _default
    settings = load_settings()
    key = (settings.uri, settings.db_uri, settings.artifact_uri)
    if _default is not None and _default[0] == key:
        return _default[1]
    from strata.client import Client

    client = Client(settings=settings)
    close_default(())
    _default = (key, client)
    return client


def default_tracking() -> TrackingService:
    """The tracking service of ``strata.Client()``: remote when STRATA_URI is set, else embedded
    on STRATA_HOME. Re-created when those settings change."""
    return default_client().tracking


def close_default(live: Iterable[Any] = ()) -> None:
    """Close the default client, unless a run still logs through it."""
    global _default
    if _default is None:
        return
    client = _default[1]
    _default = None
    built = client.__dict__.get("tracking")
    if built is not None and any(run.tracking is built for run in live):
        return
    client.close()


def resolve(client: TrackingService | HasTracking | None) -> TrackingService:
    if client is None:
        return default_tracking()
    if isinstance(client, TrackingService):
        return client
    if isinstance(client, HasTracking):
        service = client.tracking
        register_owner(service, client)
        return service
    raise InvalidInput(
        f"client must be a strata.Client or a TrackingService, got {type(client).__name__}",
        details={"field": "client"},
    )


def client_of(service: TrackingService) -> Any:
    """The Client ``service`` is the ``tracking`` of (None if it is not a Client's)."""
    owner = _owners.get(id(service))
    if owner is None and _default is not None and _default[1].__dict__.get("tracking") is service:
        owner = _default[1]
    if owner is None or owner.tracking is not service:
        return None
    return owner


def data_beside(service: TrackingService) -> DataService | None:
    """The data service of the Client ``service`` belongs to (None if it is not a Client's)."""
    owner = _owners.get(id(service))
    if owner is None and _default is not None and _default[1].__dict__.get("tracking") is service:
        owner = _default[1]
    if owner is None or owner.tracking is not service:
        return None
    data: DataService | None = getattr(owner, "data", None)
    return data


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
    """Drop the default client without closing it (in a forked child)."""
    global _default
    _default = None
