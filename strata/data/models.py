"""Data-layer domain objects: datasets, immutable versions, ingest results, diffs, lineage.

Times are timezone-aware UTC datetimes. A *reference* names a version: ``NAME`` (the latest),
``NAME@latest``, ``NAME@<version id or unique prefix>`` or ``NAME@<version tag>``.

Version ids are content addresses: the first 16 hex digits of :attr:`DatasetVersion.digest`,
the sha256 over the ordered list of the version's Parquet parts (each part's own sha256 and
row count). Parts are written with fixed settings and fixed row-group and file sizes, so the
same rows in the same order with the same Arrow schema always give the same bytes, the same
digest and so the same version (see :mod:`strata.data.storage`).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from strata.core.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
QUARANTINE_SUFFIX = "__quarantine"
#: The key of ``source_info`` whose value (a dict) is stored as the version's *claimed*
#: provenance (:attr:`DatasetVersion.claimed`) instead of its source: the server puts what a
#: remote caller says about parents, transform and source there.
CLAIMED = "claimed"
#: Columns every quarantine version carries after the data columns.
QUARANTINE_COLUMNS = ("_line", "_row", "_reason", "_raw", "_source")
LATEST = "latest"


class OnFail(StrEnum):
    """What an ingest does when its suite fails."""

    FAIL = "fail"  # nothing is published; the report is stored
    QUARANTINE = "quarantine"  # failing rows go to the quarantine with a reason
    WARN = "warn"  # everything publishes; the report records the failures


class IngestMode(StrEnum):
    """``replace``: the new version holds just the ingested rows. ``append``: the latest
    version's parts followed by the ingested rows (what stream consumers use)."""

    REPLACE = "replace"
    APPEND = "append"


class VersionKind(StrEnum):
    DATA = "data"
    QUARANTINE = "quarantine"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class ColumnAnnotation(BaseModel):
    """What a person knows about a column that its type does not say."""

    description: str = ""
    pii: bool = False
    semantic_type: str | None = None


class ColumnSchema(BaseModel):
    """One column of a version: Arrow type as its string form (``int64``, ``timestamp[s]``)."""

    name: str
    type: str
    nullable: bool = True
    annotation: ColumnAnnotation = Field(default_factory=ColumnAnnotation)


class TypeChange(BaseModel):
    name: str
    old: str
    new: str
    widening: bool = False


class SchemaChanges(BaseModel):
    """Schema evolution from one version to the next (by column name).

    ``breaking`` is true when a column was removed or changed type other than by a lossless
    widening (int8→int16→int32→int64, float32→float64, string→large_string, ...).
    """

    base: str | None = None
    added: list[ColumnSchema] = Field(default_factory=list)
    removed: list[ColumnSchema] = Field(default_factory=list)
    type_changed: list[TypeChange] = Field(default_factory=list)

    @property
    def breaking(self) -> bool:
        return bool(self.removed) or any(not c.widening for c in self.type_changed)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.type_changed)

    def summary(self) -> str:
        parts = []
        if self.added:
            parts.append("added " + ", ".join(c.name for c in self.added))
        if self.removed:
            parts.append("removed " + ", ".join(c.name for c in self.removed))
        if self.type_changed:
            parts.append(
                "changed "
                + ", ".join(
                    f"{c.name} {c.old}→{c.new}{' (widening)' if c.widening else ''}"
                    for c in self.type_changed
                )
            )
        return "; ".join(parts) or "no changes"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json") | {"breaking": self.breaking}


class Dataset(BaseModel):
    name: str
    project: str = "default"
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    kind: VersionKind = VersionKind.DATA
    created_at: datetime
    updated_at: datetime
    latest_version: str | None = None
    version_count: int = 0


#: The largest page a list of datasets or versions returns.
MAX_PAGE = 10_000


class DatasetQuery(BaseModel):
    """Which datasets :meth:`~strata.data.service.DataService.list_datasets` returns, and
    which page: the one spelling of its options (SDK keywords, REST query, CLI flags)."""

    model_config = ConfigDict(extra="forbid")

    #: A substring of the name or description (case-insensitive).
    query: str | None = None
    project: str | None = None
    #: ``KEY`` or ``KEY=VALUE``.
    tag: str | None = None
    #: The latest version has a column of this name.
    column: str | None = None
    #: True: the latest version has a PII column; False: it has none.
    pii: bool | None = None
    include_quarantine: bool = False
    max_results: int = Field(default=1000, ge=1, le=MAX_PAGE)
    page_token: str | None = None


class DataFile(BaseModel):
    """One Parquet part of a version; ``uri`` is where the server's artifact store keeps it."""

    index: int
    path: str
    uri: str
    rows: int
    bytes: int
    sha256: str


class DatasetVersion(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    dataset: str
    id: str
    digest: str
    seq: int
    kind: VersionKind = VersionKind.DATA
    rows: int
    bytes: int
    num_files: int
    columns: list[ColumnSchema]
    source: dict[str, Any] = Field(default_factory=dict)
    created_by: str = ""
    created_at: datetime
    parents: list[str] = Field(default_factory=list)
    transform_id: str | None = None
    run_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    schema_changes: SchemaChanges | None = None
    quarantine: str | None = None
    quarantined_rows: int = 0
    quarantine_of: str | None = None
    description: str = ""
    #: Provenance a remote caller *claimed* (``parents``, ``transform``, ``source_info``) and
    #: the server could not observe: kept apart, never lineage (``parents``,
    #: ``transform_id`` and ``source`` are what the server recorded itself).
    claimed: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.id}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


#: A suite as an option: a ``Suite``, YAML/JSON text, a path to a ``.yaml``/``.json`` file or a
#: parsed dict. Over HTTP it travels as the parsed dict (the client parses it).
SuiteSpec = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "string"}, {"type": "null"}]}),
]


def check_suite_spec(value: Any) -> Any:
    """``value`` if it can name a suite (a Suite, YAML/JSON text, a path, a parsed dict)."""
    is_suite = hasattr(value, "expectations") and isinstance(value, BaseModel)
    if value is None or is_suite or isinstance(value, str | dict | os.PathLike):
        return value
    raise ValueError(
        "a suite is a Suite, YAML/JSON text, a .yaml/.json path or a parsed dict, "
        f"not a {type(value).__name__}"
    )


class IngestOptions(BaseModel):
    """How to read a source and publish it: the one spelling of ingest's options.

    Built once where a call enters (``DataService.ingest`` keywords, the REST body, the CLI
    flags) and passed unchanged to the remote client, the embedded service and the committer.
    A new option is a new field here (plus its use where it takes effect). See
    :meth:`strata.data.service.DataService.ingest` for what each does.
    """

    model_config = ConfigDict(extra="forbid")

    #: ``csv`` | ``parquet`` | ``jsonl``; default from the extension.
    format: str | None = None
    #: SQLAlchemy URL: the source is a query on that database (embedded use only; a server
    #: refuses it over REST).
    sql_url: str | None = None
    #: Name of a connection an admin registered (``strata connections add``): the source is
    #: a query on that database. The only SQL source a server accepts over REST.
    connection: str | None = None
    suite: SuiteSpec = None
    on_fail: OnFail = OnFail.FAIL
    mode: IngestMode = IngestMode.REPLACE
    allow_breaking: bool = False
    #: References of the versions this one was derived from.
    parents: list[str] = Field(default_factory=list)
    run_id: str | None = None
    #: Merged into the recorded source; ``{"stream", "offsets"}`` is committed with the version.
    source_info: dict[str, Any] | None = None
    annotations: dict[str, ColumnAnnotation] | None = None
    #: Version tags to set on the new version.
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    project: str | None = None
    delimiter: str | None = None
    #: Column name → Arrow type name, overriding inference.
    column_types: dict[str, str] | None = None
    profile: bool = True
    raise_on_fail: bool = True
    #: ``{"kind", "name", "code", "git_commit"}``: how the data was derived from ``parents``.
    transform: dict[str, Any] | None = None

    @field_validator("suite")
    @classmethod
    def _suite(cls, value: Any) -> Any:
        return check_suite_spec(value)


class TransformOptions(BaseModel):
    """A transform's options: the one spelling, built where the call enters
    (``DataService.transform`` keywords, the REST body, the CLI flags) and passed unchanged
    below. The function of a Python transform is not an option: it travels beside them. See
    :meth:`strata.data.service.DataService.transform` for what each does.
    """

    model_config = ConfigDict(extra="forbid")

    #: References, each input named after its dataset; or ``{alias: ref}`` (a Python
    #: function then receives its frames by keyword).
    inputs: list[str] | dict[str, str]
    output: str
    #: A DuckDB SELECT over the inputs (as views named by their aliases); None for ``fn=``.
    sql: str | None = None
    run_id: str | None = None
    description: str = ""
    allow_breaking: bool = False
    suite: SuiteSpec = None
    on_fail: OnFail = OnFail.FAIL
    #: The commit of the code's repository; None: detected where the code is.
    git_commit: str | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, dict | list | tuple) and not value:
            raise ValueError("a transform needs at least one input")
        return value

    @field_validator("output")
    @classmethod
    def _output(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"invalid dataset name {value!r}: use 1-128 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("suite")
    @classmethod
    def _suite(cls, value: Any) -> Any:
        return check_suite_spec(value)

    @property
    def named_inputs(self) -> dict[str, str]:
        """``{alias: ref}``; the alias of a listed input is its dataset's name."""
        if isinstance(self.inputs, dict):
            return dict(self.inputs)
        return {r.partition("@")[0]: r for r in self.inputs}

    def check_code(self, fn: Any) -> None:
        """InvalidInput unless exactly one of ``fn`` (Python) and ``sql`` is given."""
        if (fn is None) == (self.sql is None):
            raise InvalidInput(
                "transform needs exactly one of fn= (a Python function) and sql= (a DuckDB query)",
                details={"field": "fn"},
            )


class IngestResult(BaseModel):
    """What one ingest (or transform, or push) did.

    ``published`` is false only when the suite failed with ``on_fail="fail"`` and the caller
    asked not to raise. ``created`` is false when identical data existed already (the
    existing version is returned, nothing was copied).
    """

    dataset: str
    version: str | None
    ref: str | None
    rows: int
    bytes: int = 0
    quarantined_rows: int = 0
    quarantine: str | None = None
    created: bool = True
    published: bool = True
    schema_changes: SchemaChanges | None = None
    validation: dict[str, Any] | None = None
    report_id: str | None = None
    seconds: float = 0.0
    input_bytes: int = 0


class StoredReport(BaseModel):
    """A validation report as stored, linked to the version it describes (if published)."""

    id: str
    dataset: str
    version: str | None
    suite: str
    success: bool
    gate: str | None = None
    created_at: datetime
    report: dict[str, Any]


class VersionDiff(BaseModel):
    a: str
    b: str
    schema_changes: SchemaChanges
    rows_a: int
    rows_b: int
    same_content: bool
    columns: dict[str, Any] = Field(default_factory=dict)

    @property
    def rows_delta(self) -> int:
        return self.rows_b - self.rows_a


class Transform(BaseModel):
    id: str
    kind: str  # "python" | "sql"
    name: str
    code: str
    code_digest: str
    git_commit: str | None = None
    inputs: list[str]
    output: str | None = None
    created_by: str = ""
    created_at: datetime


class LineageNode(BaseModel):
    id: str
    kind: str  # "dataset" | "version" | "transform" | "run"
    label: str
    attrs: dict[str, Any] = Field(default_factory=dict)


class LineageEdge(BaseModel):
    source: str
    target: str
    kind: str  # "input" (version→transform), "output" (transform→version), "parent", ...


class LineageGraph(BaseModel):
    root: str
    direction: Direction
    depth: int
    nodes: list[LineageNode] = Field(default_factory=list)
    edges: list[LineageEdge] = Field(default_factory=list)

    def node(self, node_id: str) -> LineageNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def parents_of(self, node_id: str) -> list[str]:
        """Direct upstream nodes (transform, parent version, run), not the dataset."""
        return [e.source for e in self.edges if e.target == node_id and e.kind != "version"]


class StreamPosition(BaseModel):
    """The stream offsets stored atomically with the version that holds their rows."""

    dataset: str
    stream: str
    offsets: dict[str, Any]
    version: str
    updated_at: datetime


class ConsumeOptions(BaseModel):
    """How a stream consumer batches, types, gates and compacts (see
    :meth:`strata.data.service.DataService.consume`); the one spelling of its options."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: Most records in one batch (one version each).
    batch_size: int = Field(10_000, ge=1)
    #: Longest wait, in seconds, for a batch to fill.
    batch_seconds: float = Field(5.0, gt=0)
    #: Stop after this many batches (None: no limit).
    max_batches: int | None = Field(None, ge=0)
    #: Stop after this many seconds without a record (None: never).
    idle_seconds: float | None = Field(None, ge=0)
    #: Column types until the dataset has a version: an Arrow schema or ``{column: Arrow type
    #: name}`` (``int64``, ``string``, ``timestamp[ms]``...); inferred from the first batch
    #: when None.
    schema_: Any = Field(None, alias="schema")
    suite: SuiteSpec = None
    on_fail: OnFail = OnFail.FAIL
    #: Parts of a stream-grown version past which it is rewritten into canonical parts.
    compact_after: int = Field(64, ge=1)
    #: The broker's consumer group (default ``strata.<dataset>``).
    group: str | None = None

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: Any) -> Any:
        is_arrow = hasattr(value, "names") and hasattr(value, "types")  # a pyarrow.Schema
        if value is None or is_arrow:
            return value
        if isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return value
        raise ValueError(
            "a schema is a pyarrow.Schema or {column: Arrow type name}, "
            f"not a {type(value).__name__}"
        )

    @field_validator("suite")
    @classmethod
    def _suite(cls, value: Any) -> Any:
        return check_suite_spec(value)


class StreamBatch(BaseModel):
    """One appended batch: what was read, stored, set aside, and where the stream now is."""

    batch: int
    records: int
    rows: int
    quarantined: int
    skipped: int
    version: str
    quarantine: str | None = None
    offsets: dict[str, Any]
    seconds: float
    source_committed: bool


class ConsumeResult(BaseModel):
    """What a consumer run did (``stopped``: ``max_batches``, ``idle`` or ``stop``).

    ``skipped`` records were delivered again but stored already; ``uncommitted`` records were
    read but left for the next run (malformed records while no schema is known yet);
    ``source_commit_failures`` counts broker commits that failed (nothing is lost: the
    positions are stored with the data, and the next commit or restart covers them).
    """

    dataset: str
    stream: str
    source: str
    resumed_from: dict[str, Any] = Field(default_factory=dict)
    batches: int = 0
    records: int = 0
    rows: int = 0
    quarantined: int = 0
    compactions: int = 0
    skipped: int = 0
    uncommitted: int = 0
    source_commit_failures: int = 0
    version: str | None = None
    offsets: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    stopped: str = ""


def check_name(name: str, what: str = "dataset") -> str:
    """Return ``name`` if valid; InvalidInput naming the rule otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"Invalid {what} name {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            details={"field": "name", "value": str(name)[:200]},
        )
    return name


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``NAME[@SELECTOR]`` into (name, selector); the selector defaults to ``latest``."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(
            f"Invalid dataset reference {ref!r}: expected NAME, NAME@VERSION or NAME@latest",
            details={"field": "ref"},
        )
    name, sep, selector = ref.partition("@")
    check_name(name)
    if sep and not selector:
        raise InvalidInput(
            f"Invalid dataset reference {ref!r}: nothing after '@' (expected a version id, "
            "a unique prefix, a tag or 'latest')",
            details={"field": "ref"},
        )
    return name, selector or LATEST


def with_as_of(ref: str, as_of: str | None) -> str:
    """``ref`` pinned to ``as_of`` (a version id, unique prefix, tag or ``latest``) if given.

    InvalidInput when ``ref`` already names a version and ``as_of`` differs."""
    if as_of is None:
        return ref
    name, sep, selector = ref.partition("@")
    if sep and selector != as_of:
        raise InvalidInput(
            f"Reference {ref!r} already names a version; drop as_of={as_of!r} or the '@' part",
            details={"field": "as_of"},
        )
    return f"{name}@{as_of}"


def quarantine_name(name: str) -> str:
    return f"{name}{QUARANTINE_SUFFIX}"
