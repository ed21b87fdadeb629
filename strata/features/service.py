"""The feature-store interface: definitions, point-in-time training sets, the online store.

One interface, two implementations: :class:`strata.features.embedded.EmbeddedFeatures`
(in-process: DuckDB over the data layer's Parquet, the online store from ``online_uri``) and
:class:`strata.features.remote.RemoteFeatures` (the same over HTTP). The same definitions
serve training (``get_historical_features``) and serving (``get_online_features``), so the
two cannot drift apart: offline retrieval at "now" equals online retrieval after
``materialize``.

Feature references are ``VIEW:FEATURE``; ``VIEW:*`` is every feature of the view. Entity
rows carry the views' join keys and, for time-series views, a timezone-aware timestamp
(column ``event_timestamp`` unless ``timestamp_column=`` names another).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput
from strata.features.models import (
    Definitions,
    Entity,
    FeatureService,
    FeatureStatistics,
    FeatureView,
    MaterializeResult,
    OnDemandFeatureView,
    OnlineResponse,
    Plan,
    PushStreamResult,
    Registered,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from strata.data.models import IngestResult

#: What entity rows may be: a DataFrame, an Arrow table, or a dataset reference.
EntitySource = Any
DefinitionsLike = Definitions | dict[str, Any] | str | Path


#: ``progress(result so far)`` after each batch a stream push consumer writes.
PushProgress = Callable[[PushStreamResult], None]

#: ``progress(view, rows_written_so_far)`` during a materialization.
MaterializeProgress = Callable[[str, int], None]


class FeaturesService(ABC):
    """Feature definitions, training sets and online values."""

    # -- definitions ---------------------------------------------------------------------------
    @abstractmethod
    def plan(self, definitions: DefinitionsLike) -> Plan:
        """What :meth:`apply` would change: every definition added, changed (with what
        differs, and whether it breaks readers: a feature's type or a view's keys) or
        removed (registered but not in ``definitions``). Changes nothing."""

    @abstractmethod
    def apply(self, definitions: DefinitionsLike, *, force: bool = False) -> Plan:
        """Register ``definitions`` as the whole repository (editor): add, change, remove.

        Sources are checked first (the dataset exists; the join keys, the timestamp columns
        and the features are columns of it, with types that cast to the declared ones), so a
        misconfiguration fails here, not at query time. A breaking change raises Conflict
        unless ``force``. ``definitions`` is a :class:`Definitions`, its dict, or a YAML
        text or file path (the CLI's ``strata features apply PATH``)."""

    @abstractmethod
    def list_entities(self) -> list[Registered]: ...
    @abstractmethod
    def list_feature_views(self) -> list[Registered]: ...
    @abstractmethod
    def list_feature_services(self) -> list[Registered]: ...
    @abstractmethod
    def list_on_demand_views(self) -> list[Registered]: ...

    @abstractmethod
    def get_entity(self, name: str) -> Entity:
        """Raises NotFound naming close names."""

    @abstractmethod
    def get_feature_view(self, name: str) -> FeatureView:
        """Raises NotFound naming close names."""

    @abstractmethod
    def get_feature_service(self, name: str) -> FeatureService:
        """Raises NotFound naming close names."""

    @abstractmethod
    def get_on_demand_view(self, name: str) -> OnDemandFeatureView:
        """Raises NotFound naming close names."""

    @abstractmethod
    def search_features(
        self,
        query: str = "",
        *,
        entity: str | None = None,
        tag: str | None = None,
        owner: str | None = None,
    ) -> list[dict[str, Any]]:
        """The catalog: one entry per feature (``ref``, view, type, entities, owner, tags,
        description) whose name or description contains ``query`` (case-insensitive),
        filtered by entity, tag (``key`` or ``key=value``) and owner."""

    @abstractmethod
    def get_feature_statistics(self, view: str) -> FeatureStatistics:
        """The view's statistics: the source version's profile (computed once and stored by
        the data layer) for its join keys, event time and features."""

    # -- offline -------------------------------------------------------------------------------
    @abstractmethod
    def get_historical_features(
        self,
        entities: EntitySource,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
    ) -> pa.Table:
        """Entity rows with the features joined point in time (see :mod:`strata.features.
        offline`): every entity row exactly once, in order, every other column passed
        through, nulls where nothing matched or the match is older than the view's TTL.

        ``features`` is a list of references or a feature service's name. Feature columns
        are named after the feature (``VIEW__FEATURE`` with ``full_feature_names``, needed
        when two views share a feature name). Naive timestamps raise InvalidInput unless
        ``assume_utc``; strings must carry a UTC offset."""

    def get_historical_pandas(
        self, entities: EntitySource, features: Sequence[str] | str, **options: Any
    ) -> pd.DataFrame:
        """:meth:`get_historical_features` as a pandas DataFrame."""
        frame: pd.DataFrame = self.get_historical_features(
            entities, features, **options
        ).to_pandas()
        return frame

    @abstractmethod
    def create_training_set(
        self,
        entities: EntitySource,
        features: Sequence[str] | str,
        name: str,
        *,
        timestamp_column: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
        description: str = "",
    ) -> IngestResult:
        """:meth:`get_historical_features` stored as a version of dataset ``name``, with
        lineage to the views' source versions (and the entity version, when given by
        reference) and the features it holds recorded in its transform."""

    # -- online --------------------------------------------------------------------------------
    @abstractmethod
    def materialize(
        self,
        start: datetime | None,
        end: datetime,
        views: Sequence[str] | None = None,
        *,
        progress: MaterializeProgress | None = None,
    ) -> list[MaterializeResult]:
        """Write the latest row per entity with ``start <= event_ts < end`` of each view (all
        online views by default) to the online store, streaming in bounded memory. Static
        views write every key. Runs of the same view are serialized. ``progress(view,
        rows_written)`` is called after each written batch (embedded) or once per view when
        the server answers (remote)."""

    @abstractmethod
    def materialize_incremental(
        self,
        end: datetime,
        views: Sequence[str] | None = None,
        *,
        progress: MaterializeProgress | None = None,
    ) -> list[MaterializeResult]:
        """:meth:`materialize` from where the view's last materialization ended."""

    @abstractmethod
    def push(self, view: str, rows: Sequence[dict[str, Any]]) -> int:
        """Write fresh rows (join keys, the event timestamp, features) to the online store;
        a value of the wrong type raises InvalidInput naming the field. Returns the count."""

    def consume_push(
        self,
        view: str,
        source: str,
        *,
        group: str | None = None,
        batch_size: int = 1000,
        max_records: int | None = None,
        idle_seconds: float | None = None,
        progress: PushProgress | None = None,
    ) -> PushStreamResult:
        """Push a stream into the online store: records of a Kafka topic
        (``kafka://HOST:PORT/TOPIC``) or a Redis stream (``redis://HOST:PORT/0?stream=S``),
        each a JSON object like a :meth:`push` row, in micro-batches of ``batch_size``;
        positions are committed after each batch is written (at least once; a replayed
        record never replaces a newer value). Bad records are counted and skipped. Runs until
        ``max_records`` records or ``idle_seconds`` without one. It runs where it is called,
        next to the broker: a remote client refuses it."""
        raise InvalidInput(
            "consume_push runs in the process that reads the stream; use an embedded client "
            "(no STRATA_URI) with the server's database and online store",
            details={"field": "source"},
        )

    @abstractmethod
    def get_online_features(
        self, features: Sequence[str] | str, entity_rows: Sequence[dict[str, Any]]
    ) -> OnlineResponse:
        """The latest values for each entity row, each with its event time and a status
        (``present``, ``missing``, ``outside_ttl``)."""
