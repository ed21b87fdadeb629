"""``strata.Client``: one interface, embedded (in-process) or remote (over HTTP).

``Client()`` runs every service in this process on the local stores (``STRATA_HOME``);
``Client("http://host:8080", token=...)`` talks to a ``strata server`` with the same methods.
With no argument, ``STRATA_URI``/``STRATA_TOKEN`` select remote mode when set.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from strata.core.config import Settings, load_settings

# The layers' services are imported where a property builds one, so a command pays only for
# the layers it uses (`strata data list` loads no tracking or governance models).
if TYPE_CHECKING:
    from strata.backends.context import Backends
    from strata.core.transport import HttpTransport
    from strata.data.models import LineageGraph
    from strata.data.service import DataService
    from strata.features.service import FeaturesService
    from strata.governance.service import GovernanceService
    from strata.monitoring.service import MonitoringService
    from strata.registry.service import RegistryService
    from strata.serving.service import ServingService
    from strata.tracking.service import TrackingService


class Client:
    """Entry point to every Strata service.

    Attributes are the layers' services: ``governance`` (users, tokens, audit) and, as
    layers land, ``tracking`` and the rest. Each has the same methods in both modes.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        token: str | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings or load_settings(**overrides)
        remote_uri = uri if uri is not None else self.settings.uri
        if remote_uri and not remote_uri.startswith(("http://", "https://")):
            from strata.core.errors import InvalidInput

            raise InvalidInput(
                f"Client URI must be http:// or https://, got {remote_uri!r}; "
                "call Client() with no URI for embedded mode",
                details={"field": "uri"},
            )
        self.uri = remote_uri or None
        if self.uri:
            secret = token
            if secret is None and self.settings.token is not None:
                secret = self.settings.token.get_secret_value()
            from strata.core.transport import HttpTransport

            self._http: HttpTransport | None = HttpTransport(self.uri, secret)
            self._backends: Backends | None = None
        else:
            self._http = None
            from strata.backends.context import Backends  # SQLAlchemy: embedded only

            self._backends = Backends(self.settings)

    @property
    def is_remote(self) -> bool:
        return self._http is not None

    @property
    def backends(self) -> Backends:
        """The local backends (embedded mode only)."""
        if self._backends is None:
            from strata.core.errors import InvalidInput

            raise InvalidInput("A remote client has no local backends")
        return self._backends

    @cached_property
    def governance(self) -> GovernanceService:
        if self._http is not None:
            from strata.governance.remote import RemoteGovernance

            return RemoteGovernance(self._http)
        from strata.governance.embedded import EmbeddedGovernance

        return EmbeddedGovernance(self.backends)

    @cached_property
    def tracking(self) -> TrackingService:
        """Experiments, runs, metrics, params, tags, inputs and artifacts."""
        from strata.tracking.fluent_services import register_owner

        service: TrackingService
        if self._http is not None:
            from strata.tracking.remote import RemoteTracking

            service = RemoteTracking(self._http)
        else:
            from strata.tracking.embedded import EmbeddedTracking

            service = EmbeddedTracking(self.backends)
        register_owner(service, self)  # the fluent API finds this Client's data service
        return service

    @cached_property
    def data(self) -> DataService:
        """Datasets, immutable versions, ingestion, validation, profiles, lineage, catalog."""
        if self._http is not None:
            from strata.data.remote import RemoteData

            return RemoteData(self._http, self.settings)
        from strata.data.embedded import EmbeddedData

        return EmbeddedData(self.backends)

    @cached_property
    def features(self) -> FeaturesService:
        """Entities, feature views, point-in-time training sets, the online store."""
        if self._http is not None:
            from strata.features.remote import RemoteFeatures

            return RemoteFeatures(self._http)
        from strata.features.embedded import EmbeddedFeatures

        return EmbeddedFeatures(self.backends, self.data)

    @cached_property
    def registry(self) -> RegistryService:
        """Registered models, versions, aliases with history, approvals, model cards."""
        if self._http is not None:
            from strata.registry.remote import RemoteRegistry

            return RemoteRegistry(self._http)
        from strata.registry.embedded import EmbeddedRegistry

        return EmbeddedRegistry(self.backends, self.tracking, self.data)

    @cached_property
    def monitoring(self) -> MonitoringService:
        """Drift, prediction-log queries, feedback and performance, health, alert rules."""
        if self._http is not None:
            from strata.monitoring.remote import RemoteMonitoring

            return RemoteMonitoring(self._http)
        from strata.monitoring.embedded import EmbeddedMonitoring

        return EmbeddedMonitoring(self.backends, self.data, self.registry, peers=self)

    @cached_property
    def serving(self) -> ServingService:
        """Inference endpoints published by `strata serve` and their traffic policies."""
        if self._http is not None:
            from strata.serving.remote import RemoteServing

            return RemoteServing(self._http)
        from strata.serving.embedded import EmbeddedServing

        return EmbeddedServing(self.backends, peers=self)

    def lineage(self, ref: str, *, direction: str = "up", depth: int = 5) -> LineageGraph:
        """The data lineage of a dataset version, joined with tracking.

        Same graph as ``client.data.lineage``; going ``down`` it also holds the runs that
        recorded a version of the graph as an input (``strata.log_input``), as ``run`` nodes
        with an ``input`` edge from the version — data to the models trained on it. Runs
        are found in every experiment, deleted ones included.
        """
        from strata.data.models import LineageEdge, LineageNode

        graph = self.data.lineage(ref, direction=direction, depth=depth)
        versions = [n for n in graph.nodes if n.kind == "version"]
        if graph.direction.value != "down" or not versions:
            return graph
        by_key: dict[tuple[str, str], list[str]] = {}
        for node in versions:
            version = self.data.get_version(node.label)
            by_key.setdefault((version.dataset, version.digest), []).append(node.id)
        uses = self.tracking.list_input_uses(list(by_key))  # one query: the join is in SQL
        contexts: dict[tuple[str, str], set[str]] = {}
        for use in uses:
            contexts.setdefault((use.run.run_id, use.digest), set()).add(use.context)
        known = {n.id for n in graph.nodes}
        linked: set[tuple[str, str]] = set()
        for use in uses:
            run_node = f"run:{use.run.run_id}"
            if run_node not in known:
                known.add(run_node)
                graph.nodes.append(
                    LineageNode(
                        id=run_node,
                        kind="run",
                        label=use.run.run_name,
                        attrs={
                            "run_id": use.run.run_id,
                            "experiment_id": use.run.experiment_id,
                            "status": use.run.status.value,
                            "contexts": sorted(contexts[(use.run.run_id, use.digest)]),
                        },
                    )
                )
            for node_id in by_key[(use.name, use.digest)]:
                if (node_id, run_node) not in linked:
                    linked.add((node_id, run_node))
                    graph.edges.append(LineageEdge(source=node_id, target=run_node, kind="input"))
        return graph

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if "features" in self.__dict__ and hasattr(self.features, "close"):
            self.features.close()
        if "monitoring" in self.__dict__ and hasattr(self.monitoring, "close"):
            self.monitoring.close()  # its queued alert actions, before the database goes
        if self._backends is not None:
            self._backends.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.uri!r})" if self.uri else "Client(embedded)"
