"""The data interface: datasets, immutable versions, ingestion, validation, lineage, catalog.

One interface, two implementations: :class:`strata.data.embedded.EmbeddedData` (in-process,
on the metadata DB and the artifact store) and :class:`strata.data.remote.RemoteData` (the
same methods over HTTP). References (``ref``) are ``NAME``, ``NAME@latest``,
``NAME@<version id or unique prefix>`` or ``NAME@<tag>``; every ``get_*`` raises NotFound
naming what is missing, an ambiguous prefix raises InvalidInput listing the candidates.

Quarantine: rows that cannot be read (with their line number) and, under
``on_fail="quarantine"``, rows failing the suite's row-level expectations go to a version of
the companion dataset ``<name>__quarantine``. Its columns are the data columns followed by
``_line`` (1-based physical line in the source; the header is line 1), ``_row`` (1-based
row number among the rows that were read, for suite failures), ``_reason``, ``_raw`` (the
unparseable text) and ``_source`` (file or URI). The data version records its quarantine
version (``DatasetVersion.quarantine``) and the count; nothing is dropped silently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from strata.core.errors import InvalidInput
from strata.core.page import Page
from strata.core.parse import parse_options
from strata.data.models import (
    ColumnAnnotation,
    ConsumeOptions,
    ConsumeResult,
    DataFile,
    Dataset,
    DatasetQuery,
    DatasetVersion,
    Direction,
    IngestMode,
    IngestOptions,
    IngestResult,
    LineageGraph,
    StoredReport,
    StreamBatch,
    StreamPosition,
    Transform,
    TransformOptions,
    VersionDiff,
)

if TYPE_CHECKING:
    import threading

    import duckdb
    import pandas as pd
    import pyarrow as pa

    from strata.data.expectations.report import ValidationReport
    from strata.data.expectations.suite import Suite
    from strata.data.profiles.model import DatasetProfile

#: ``progress(rows_so_far, input_bytes_so_far, total_input_bytes_or_None)``
Progress = Callable[[int, int, int | None], None]
#: ``on_batch(batch, totals_so_far)``, called after each stream batch is durable.
OnBatch = Callable[[StreamBatch, ConsumeResult], None]


class DataService(ABC):
    """Versioned, validated, traceable datasets."""

    # -- datasets ------------------------------------------------------------------------------
    @abstractmethod
    def create_dataset(
        self,
        name: str,
        *,
        project: str = "default",
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> Dataset:
        """Create an empty dataset; AlreadyExists if the name is taken. ``owner`` defaults to
        the caller. Ingesting into an unknown name creates the dataset implicitly."""

    @abstractmethod
    def get_dataset(self, name: str) -> Dataset: ...

    @abstractmethod
    def update_dataset(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Dataset:
        """Change metadata; ``tags`` are merged (an empty-string value deletes the key)."""

    def list_datasets(
        self, options: DatasetQuery | None = None, **option_fields: Any
    ) -> Page[Dataset]:
        """One page of the catalog, sorted by name.

        Options are the fields of :class:`~strata.data.models.DatasetQuery`, as an object,
        keywords, or both: ``query`` matches a substring of the name or description
        (case-insensitive); ``tag`` is ``KEY`` or ``KEY=VALUE``; ``column`` and ``pii`` look
        at the latest version's columns (``pii=True``: has a PII column);
        ``include_quarantine`` adds the ``__quarantine`` companions. At most ``max_results``
        (1..10,000, default 1,000) per page; pass ``next_page_token`` back as ``page_token``
        for the next (:func:`strata.core.page.iterate_pages` walks them all). InvalidInput
        names a bad option or token."""
        return self.list_datasets_with(parse_options(DatasetQuery, options, **option_fields))

    @abstractmethod
    def list_datasets_with(self, options: DatasetQuery) -> Page[Dataset]:
        """:meth:`list_datasets` with validated options."""

    # -- versions ------------------------------------------------------------------------------
    @abstractmethod
    def list_versions(
        self,
        name: str,
        *,
        max_results: int = 1000,
        page_token: str | None = None,
        newest_first: bool = False,
    ) -> Page[DatasetVersion]:
        """One page of the versions of ``name``, oldest first (newest first with
        ``newest_first``), at most ``max_results`` (1..10,000); pass ``next_page_token``
        back as ``page_token`` (with the same ``newest_first``) for the next. NotFound for
        an unknown dataset; InvalidInput for a bad size or token."""

    @abstractmethod
    def get_version(self, ref: str) -> DatasetVersion: ...

    @abstractmethod
    def tag_version(self, ref: str, tag: str) -> DatasetVersion:
        """Point ``tag`` (unique per dataset; moved if it existed) at the version."""

    @abstractmethod
    def annotate(
        self, ref: str, annotations: dict[str, ColumnAnnotation | dict[str, Any]]
    ) -> DatasetVersion:
        """Set column annotations (description, PII flag, semantic type) of a version.

        Annotations are metadata: the data and the version id do not change. Later versions
        inherit the annotations of same-named columns. InvalidInput names unknown columns.
        """

    @abstractmethod
    def files(self, ref: str, *, as_of: str | None = None) -> list[DataFile]:
        """The version's Parquet parts in row order (``as_of`` pins ``NAME`` to a version)."""

    @abstractmethod
    def open_file(self, ref: str, index: int) -> tuple[DataFile, BinaryIO]:
        """Part ``index`` of the version (see :meth:`files`) and a reader of its bytes; the
        caller closes the reader. Reading to the end checks the recorded sha256 (raises
        DigestMismatch). InvalidInput names the valid indexes."""

    # -- ingestion -----------------------------------------------------------------------------
    def ingest(
        self,
        source: Any,
        name: str,
        options: IngestOptions | None = None,
        *,
        progress: Progress | None = None,
        **option_fields: Any,
    ) -> IngestResult:
        """Read ``source`` (see :mod:`strata.data.ingest`) into a new version of ``name``.

        Options are the fields of :class:`~strata.data.models.IngestOptions`, given as an
        ``options`` object, as keywords (``format=``, ``sql_url=``, ``suite=``, ``on_fail=``,
        ``mode=``, ``allow_breaking=``, ``parents=``, ``run_id=``, ``source_info=``,
        ``annotations=``, ``tags=``, ``description=``, ``project=``, ``delimiter=``,
        ``column_types=``, ``profile=``, ``raise_on_fail=``, ``transform=``), or both
        (keywords win). An unknown keyword or a bad value raises InvalidInput naming it.

        The version id is the content digest: identical data gives the existing version
        (``created=False``). With a ``suite``: ``on_fail="fail"`` publishes nothing when it
        fails (InvalidInput carrying the report in ``details["validation"]``, or a result
        with ``published=False`` when ``raise_on_fail=False``); ``"quarantine"`` moves rows
        failing row-level expectations to the quarantine and publishes the rest (aggregate
        failures are reported, like ``"warn"``); ``"warn"`` publishes everything. The report
        is stored and linked to the version. A schema change that removes a column or
        narrows/changes a type raises Conflict unless ``allow_breaking=True``.
        ``source_info`` is merged into the recorded source; a ``{"stream": KEY, "offsets":
        {...}}`` entry is stored atomically with the version (see :meth:`stream_position`).
        ``transform`` (``{"kind", "name", "code", "git_commit"}``) records how the data was
        derived from ``parents`` (what :meth:`transform` does for you).
        Raises NotFound (missing file, naming the path), InvalidInput (empty input, bad
        options), Unavailable (unreachable URL or database; messages without credentials).
        """
        opts = parse_options(IngestOptions, options, **option_fields)
        return self.ingest_with(source, name, opts, progress=progress)

    @abstractmethod
    def ingest_with(
        self,
        source: Any,
        name: str,
        options: IngestOptions,
        *,
        progress: Progress | None = None,
        label: str | None = None,
    ) -> IngestResult:
        """:meth:`ingest` with validated options. ``label`` names the source in the
        recorded source info and in messages in place of its path (an uploaded file's own
        name rather than the server's temporary copy)."""

    @abstractmethod
    def push_rows(
        self,
        name: str,
        rows: list[dict[str, Any]] | bytes | str,
        *,
        mode: IngestMode | str = IngestMode.APPEND,
        source_info: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Ingest rows given as dicts, a JSON array or NDJSON text (the HTTP push path).

        Defaults to ``append``: each push adds its rows to the latest version.
        """

    @abstractmethod
    def stream_position(self, name: str, stream: str) -> StreamPosition | None:
        """The offsets last committed with a version of ``name`` for ``stream`` (or None).

        A consumer resumes from here after a crash: offsets and rows are stored in one
        transaction, so nothing is lost or duplicated."""

    def consume(
        self,
        uri: str,
        name: str,
        options: ConsumeOptions | None = None,
        *,
        on_batch: OnBatch | None = None,
        stop: threading.Event | None = None,
        **option_fields: Any,
    ) -> ConsumeResult:
        """Append the stream at ``uri`` (``kafka://HOST:PORT/TOPIC``,
        ``redis://HOST:PORT/DB?stream=NAME``) to ``name``, one version per micro-batch.

        Options are the fields of :class:`~strata.data.models.ConsumeOptions` (``batch_size``,
        ``batch_seconds``, ``max_batches``, ``idle_seconds``, ``schema``, ``suite``,
        ``on_fail``, ``compact_after``, ``group``), as an object, keywords, or both. Runs until
        ``max_batches`` batches were appended, no record arrived for ``idle_seconds``, or
        ``stop`` is set (a batch being appended is finished first); with none of them until
        interrupted, which is safe at any moment: each batch's rows and end positions commit
        in one transaction, the broker's commit follows, and a restart resumes from the
        stored positions (see :mod:`strata.data.streaming`). ``on_batch`` is called after
        each batch is durable. Embedded only: InvalidInput from a remote client (the positions
        commit in the metadata database's transaction). Raises InvalidInput (bad options,
        unknown scheme, a gated batch whose suite failed), Unavailable (broker or database
        unreachable), NotFound (no such topic).
        """
        opts = parse_options(ConsumeOptions, options, **option_fields)
        return self.consume_with(uri, name, opts, on_batch=on_batch, stop=stop)

    @abstractmethod
    def consume_with(
        self,
        uri: str,
        name: str,
        options: ConsumeOptions,
        *,
        on_batch: OnBatch | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumeResult:
        """:meth:`consume` with validated options."""

    # -- reading -------------------------------------------------------------------------------
    @abstractmethod
    def read_arrow(
        self, ref: str, *, columns: Sequence[str] | None = None, as_of: str | None = None
    ) -> pa.Table:
        """The version as an Arrow table, rows in ingest order. ``as_of`` (a version id,
        unique prefix, tag or ``latest``) pins a bare ``NAME``; InvalidInput names an unknown
        column."""

    def read_pandas(
        self, ref: str, *, columns: Sequence[str] | None = None, as_of: str | None = None
    ) -> pd.DataFrame:
        """The version as a pandas DataFrame (see :meth:`read_arrow`)."""
        frame: pd.DataFrame = self.read_arrow(ref, columns=columns, as_of=as_of).to_pandas()
        return frame

    def query(self, sql: str, inputs: dict[str, str], *, limit: int | None = None) -> pa.Table:
        """One read-only SELECT over dataset versions, each input a view named by its alias
        (``query("SELECT origin, avg(temp) FROM w GROUP BY 1", {"w": "weather@latest"})``).

        The SQL is checked by DuckDB's parser (exactly one SELECT) and runs on a connection
        that holds only the inputs' rows (read through :meth:`read_arrow`, so each part is
        verified) with external access off and the configuration locked: it reads nothing
        else, on either side of a remote client. The inputs are held in memory while it
        runs. ``limit`` caps the rows (``0``: the result's schema only)."""
        from strata.data.expressions import run_select

        tables = {alias: self.read_arrow(ref) for alias, ref in _query_inputs(inputs).items()}
        return run_select(sql, tables, limit=limit)

    @abstractmethod
    def duckdb(
        self,
        ref: str,
        *,
        con: duckdb.DuckDBPyConnection | None = None,
        view: str | None = None,
        as_of: str | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """A lazy DuckDB relation over the version's Parquet parts (nothing is loaded).

        With ``view``, the parts are also registered as that view in ``con``."""

    # -- quality -------------------------------------------------------------------------------
    @abstractmethod
    def validate(
        self,
        ref: str,
        suite: Suite | str | Path | dict[str, Any],
        *,
        sample_size: int = 20,
    ) -> ValidationReport:
        """Run ``suite`` over the version (DuckDB over Parquet); the report is stored.

        InvalidInput names an expectation's unknown column and lists the existing ones."""

    @abstractmethod
    def list_reports(self, ref: str) -> list[StoredReport]:
        """Validation reports stored for the version, newest first."""

    @abstractmethod
    def profile(self, ref: str) -> DatasetProfile:
        """The version's profile (computed once, then stored with the version): per column
        counts, nulls, distinct estimates, quantiles, histograms and top values
        (:class:`~strata.data.profiles.model.DatasetProfile`, imported lazily)."""

    @abstractmethod
    def suggest_suite(self, ref: str) -> Suite:
        """A suite proposed from the version's profile, to edit and use."""

    @abstractmethod
    def diff(self, a: str, b: str) -> VersionDiff:
        """Schema changes, row counts and per-column statistic changes from ``a`` to ``b``."""

    @abstractmethod
    def quarantine(self, ref: str) -> DatasetVersion | None:
        """The quarantine version holding the rows set aside when ``ref`` was ingested."""

    # -- lineage -------------------------------------------------------------------------------
    def transform(
        self,
        inputs: Sequence[str] | dict[str, str],
        options: TransformOptions | None = None,
        *,
        fn: Callable[..., Any] | None = None,
        **option_fields: Any,
    ) -> IngestResult:
        """Derive a version of ``output`` from ``inputs`` and record how.

        Options are the fields of :class:`~strata.data.models.TransformOptions` (``output=``,
        ``sql=``, ``run_id=``, ``description=``, ``allow_breaking=``, ``suite=``,
        ``on_fail=``, ``git_commit=``), as an ``options`` object, keywords, or both
        (keywords win); ``output`` is required. An unknown keyword or a bad value raises
        InvalidInput naming it.

        ``sql`` runs in DuckDB where each input is a view named after its dataset (or the
        key when ``inputs`` is a dict ``{alias: ref}``). ``fn`` is called with one pandas
        DataFrame per input (positionally, or by keyword for a dict) and returns a
        DataFrame, Arrow table or anything Arrow-streamable; exactly one of the two is
        given. The new version's parents are the inputs' versions; the transform records
        the code (SQL text or the function's source), its sha256 and the git commit of the
        code's repository (None outside one; ``git_commit`` overrides the detected one, as
        a remote client sends its own).
        """
        opts = parse_options(TransformOptions, options, **option_fields, inputs=inputs)
        opts.check_code(fn)
        return self.transform_with(opts, fn=fn)

    @abstractmethod
    def transform_with(
        self, options: TransformOptions, *, fn: Callable[..., Any] | None = None
    ) -> IngestResult:
        """:meth:`transform` with validated options (``fn`` given exactly when
        ``options.sql`` is None)."""

    @abstractmethod
    def get_transform(self, transform_id: str) -> Transform: ...

    @abstractmethod
    def lineage(
        self, ref: str, *, direction: Direction | str = Direction.UP, depth: int = 5
    ) -> LineageGraph:
        """The graph around a version: ``up`` to its ancestors, ``down`` to its descendants,
        ``depth`` version hops. Nodes are datasets, versions, transforms and runs."""


def part_of(ref: str, files: list[DataFile], index: int) -> DataFile:
    """The part numbered ``index`` in ``files`` of ``ref``; InvalidInput naming the range."""
    match = [f for f in files if f.index == index]
    if not match:
        raise InvalidInput(
            f"Version {ref} has parts 0..{len(files) - 1}, not {index}",
            details={"index": index},
        )
    return match[0]


def _query_inputs(inputs: dict[str, str]) -> dict[str, str]:
    if not isinstance(inputs, dict) or not inputs:
        raise InvalidInput(
            "inputs must map at least one view name to a dataset reference, e.g. "
            "{'w': 'weather@latest'}",
            details={"field": "inputs"},
        )
    for alias, ref in inputs.items():
        if not isinstance(alias, str) or not alias.strip():
            raise InvalidInput("inputs need non-empty view names", details={"field": "inputs"})
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput(
                f"inputs[{alias!r}] must be a dataset reference", details={"field": "inputs"}
            )
    return inputs
