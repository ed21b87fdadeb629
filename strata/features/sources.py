"""A feature view's source, pinned for one operation: a dataset version, or one read-only
SELECT over dataset versions (:class:`~strata.features.models.SqlSource`).

Every operation (apply's checks, a retrieval, a materialization, statistics) resolves the
source once to exact versions, so all its reads see the same data and what it records
(a training set's parents, a materialization's source) names exactly what was read. SQL runs
through the data layer's :meth:`~strata.data.service.DataService.query`: sandboxed, only its
inputs readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from strata.features.models import FeatureView, SqlSource

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from strata.data.service import DataService


@dataclass(frozen=True)
class PinnedSource:
    view: FeatureView
    #: The exact versions read (``NAME@VERSIONID``), one per input.
    versions: dict[str, str]

    @property
    def sql(self) -> SqlSource | None:
        return self.view.source if isinstance(self.view.source, SqlSource) else None

    @property
    def label(self) -> str:
        """What was read, for records and messages (at most 200 characters)."""
        if self.sql is None:
            return next(iter(self.versions.values()))
        text = "SQL over " + ", ".join(f"{a}={r}" for a, r in self.versions.items())
        return text if len(text) <= 200 else text[:197] + "..."

    def register(self, data: DataService, con: duckdb.DuckDBPyConnection, relation: str) -> None:
        """Make the source's rows the view ``relation`` of ``con``."""
        if self.sql is None:
            data.duckdb(next(iter(self.versions.values())), con=con, view=relation)
            return
        con.register(relation, self.table(data))

    def table(self, data: DataService, limit: int | None = None) -> pa.Table:
        """The SQL source's rows (held in memory; dataset sources are read lazily)."""
        assert self.sql is not None
        return data.query(self.sql.sql, self.versions, limit=limit)

    def column_types(self, data: DataService) -> dict[str, str]:
        """Column -> Arrow type name, as the data layer records them."""
        if self.sql is None:
            version = data.get_version(next(iter(self.versions.values())))
            return {c.name: c.type for c in version.columns}
        return {f.name: str(f.type) for f in self.table(data, limit=0).schema}


def pin(data: DataService, view: FeatureView) -> PinnedSource:
    """The view's source resolved to exact versions (NotFound names a missing dataset)."""
    if isinstance(view.source, SqlSource):
        versions = {a: data.get_version(r).ref for a, r in view.source.inputs.items()}
    else:
        versions = {"source": data.get_version(view.source).ref}
    return PinnedSource(view, versions)
