"""Batch scoring: a model over a dataset version, in chunks across processes, resumable.

``score_batch("flights@production", "flights@v3", "flights_scored")``:

1. pins the model (:mod:`strata.serving.batch_model`) and the input version (``NAME`` →
   its latest version's id), and checks the input has every column the signature names;
2. reads the version with DuckDB (only the columns needed) as Arrow batches, cut into chunks
   of exactly ``chunk_rows`` rows — the same chunks on every run of the same job;
3. sends each chunk's signature columns to a worker — a *spawned* process of a local pool
   (default), a Ray actor (``executor="ray"``) or this process (``"inline"``) — which
   predicts on numpy arrays through :meth:`~strata.models.model.Model.predict_arrays`;
4. writes each finished chunk (``_row``, the ``keep`` columns, ``prediction``, optional
   ``probability_<label>``) as a Parquet file in the job's directory
   ``$STRATA_HOME/scoring/<job>/`` (temp name, then rename: a file there is complete);
5. publishes the chunks in order as a new version of ``output`` through the data interface,
   with the input version as its parent, a ``predict`` transform naming the model version
   (and its digest), and the model's run as the version's run — then removes the job dir.

Resuming: a job is identified by the model's digest, the input version, the output name and
every option that changes the rows. Killed at any point (even SIGKILL), a rerun finds the
job's directory, skips the chunks whose files are complete and scores only the rest; the
published output is identical to an uninterrupted run's. A second run of the same job while
one is alive is refused (a lock on the job directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from strata.core import faults
from strata.core.errors import Conflict, InvalidInput, StrataError
from strata.core.staging import Swept
from strata.serving.batch_model import PinnedModel, Services, default_services, pin

if TYPE_CHECKING:
    import pyarrow as pa

#: ``progress(rows_done, rows_total)``: after each chunk is durable (resumed ones first).
Progress = Callable[[int, int], None]
OUTPUT_COLUMNS = ("_row", "prediction")
#: Rows left to score from which the default executor is the local process pool.
POOL_MIN_ROWS = 2_000_000


class BatchCancelled(StrataError):
    """The job was stopped (``stop`` set) before every chunk was scored: the finished chunks
    stay in its directory, so running the same job again resumes from them."""


class BatchOptions(BaseModel):
    """How a batch scoring job runs (``strata predict batch`` flags)."""

    model_config = ConfigDict(extra="forbid")

    #: Rows per chunk: the unit of work, of progress and of resuming.
    chunk_rows: int = Field(50_000, ge=100, le=10_000_000)
    #: Worker processes (default: the CPU count, at most one per chunk).
    workers: int | None = Field(None, ge=1, le=256)
    #: ``local`` (a spawned process pool), ``ray`` (actors on the cluster ``ray.init``
    #: finds, or ``ray_address``) or ``inline`` (this process). Default: ``ray`` when
    #: STRATA_EXECUTOR_URI starts with ``ray``; else ``local`` when at least
    #: :data:`POOL_MIN_ROWS` rows are left to score and there is more than one CPU, and
    #: ``inline`` below that (starting processes that import the model's framework costs
    #: seconds, more than a pool saves on a small input: docs/serving.md has the figures).
    executor: Literal["local", "ray", "inline"] | None = None
    ray_address: str | None = None
    #: Input columns copied into the output beside the predictions (ids, keys).
    keep: list[str] = Field(default_factory=list)
    #: Add ``probability_<label>`` columns (classifiers).
    proba: bool = False
    runtime: Literal["native", "onnx", "onnx-int8"] = "native"
    #: Allow model formats that run code when loaded (pickle...).
    trusted: bool = False
    #: Native threads per worker (default: CPUs / workers, at least 1).
    threads: int | None = Field(None, ge=1, le=256)
    description: str = ""
    #: Profile the output when it is published (else on first ``profile()`` call).
    profile: bool = False


class BatchResult(BaseModel):
    """What a batch scoring job did."""

    output: str
    dataset: str
    version: str
    rows: int
    input: str
    model: dict[str, str | None]
    chunks: int
    resumed_chunks: int
    scored_chunks: int
    executor: str
    workers: int
    created: bool
    seconds: float
    rows_per_second: float


@dataclass
class _Job:
    model: PinnedModel
    input_ref: str
    output: str
    options: BatchOptions
    features: list[str]
    rows: int
    dir: Path
    done: set[int] = field(default_factory=set)

    @property
    def chunks(self) -> int:
        return max(1, math.ceil(self.rows / self.options.chunk_rows))

    def chunk_path(self, index: int) -> Path:
        return self.dir / "chunks" / f"part-{index:06d}.parquet"

    def expected_rows(self, index: int) -> int:
        size = self.options.chunk_rows
        return max(0, min(size, self.rows - index * size))


def score_batch(
    model: str,
    input: str,
    output: str,
    options: BatchOptions | None = None,
    *,
    client: Services | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    **option_fields: Any,
) -> BatchResult:
    """Score every row of the dataset version ``input`` with ``model`` into a new version of
    ``output`` (see the module doc). Options are the fields of :class:`BatchOptions`.

    Raises InvalidInput (bad ref or option, input lacking a signature column, a ``keep``
    column that is unknown or clashes with an output column), NotFound (unknown model,
    version or dataset), Conflict (the same job is running in another process),
    DigestMismatch (changed model files or input parts), BatchCancelled (``stop`` was set:
    no new chunk starts, the ones in flight are written, nothing is published)."""
    from strata.core.parse import parse_options
    from strata.data.models import check_name
    from strata.models.tracked import release

    opts = parse_options(BatchOptions, options, **option_fields)
    check_name(output)
    services = client or default_services()
    started = time.monotonic()
    pinned = pin(services, model)
    try:
        return _score(services, pinned, input, output, opts, progress, stop, started)
    finally:
        release(pinned.path)  # a models:/ download: never left in $STRATA_HOME/tmp


def _score(
    services: Services,
    pinned: PinnedModel,
    input: str,
    output: str,
    opts: BatchOptions,
    progress: Progress | None,
    stop: threading.Event | None,
    started: float,
) -> BatchResult:
    from strata.core.config import load_settings

    version = services.data.get_version(input)
    input_ref = f"{version.dataset}@{version.id}"
    features = _features(pinned, [c.name for c in version.columns], opts)
    key = _job_key(pinned, input_ref, output, opts)
    settings = getattr(services, "settings", None) or load_settings()  # a Client's own home
    job = _Job(pinned, input_ref, output, opts, features, version.rows,
               settings.home / "scoring" / key)  # fmt: skip
    with _locked(job):
        _write_description(job)
        job.done = _finished_chunks(job)
        resumed = len(job.done)
        todo = job.chunks - resumed
        left = job.rows - sum(job.expected_rows(i) for i in job.done)
        executor = opts.executor or _default_executor(left)
        workers = (
            1 if executor == "inline" else min(opts.workers or os.cpu_count() or 1, max(todo, 1))
        )
        threads = opts.threads or max(1, (os.cpu_count() or 1) // workers)
        if progress is not None:
            progress(sum(job.expected_rows(i) for i in job.done), job.rows)
        if todo:
            _run(services, job, executor, workers, threads, progress, stop)
        published = _publish(services, job)
    shutil.rmtree(job.dir, ignore_errors=True)
    seconds = time.monotonic() - started
    assert published.version is not None
    return BatchResult(
        output=f"{output}@{published.version}",
        dataset=output,
        version=published.version,
        rows=published.rows,
        input=input_ref,
        model=pinned.record(),
        chunks=job.chunks,
        resumed_chunks=resumed,
        scored_chunks=todo,
        executor=executor,
        workers=workers if todo else 0,
        created=published.created,
        seconds=seconds,
        rows_per_second=published.rows / seconds if seconds > 0 else 0.0,
    )


def _default_executor(rows_left: int) -> Literal["local", "ray", "inline"]:
    from strata.core.config import load_settings

    if load_settings().executor_uri.startswith("ray"):
        return "ray"
    return "local" if rows_left >= POOL_MIN_ROWS and (os.cpu_count() or 1) > 1 else "inline"


def _features(model: PinnedModel, columns: list[str], opts: BatchOptions) -> list[str]:
    """The signature's input columns, checked against the input's columns and ``keep``."""
    signature = model.spec.signature
    if signature is None or signature.is_tensor:
        raise InvalidInput(
            f"Batch scoring needs a model whose signature names its input columns; {model.label} "
            + ("has no signature" if signature is None else "takes one tensor"),
            details={"field": "model"},
        )
    features = signature.input_names()
    missing = [c for c in features if c not in columns]
    if missing:
        raise InvalidInput(
            f"The input lacks column(s) {', '.join(map(repr, missing))} that {model.label} "
            f"needs (it has: {', '.join(columns)})",
            details={"field": "input", "missing": missing},
        )
    for col in opts.keep:
        if col not in columns:
            raise InvalidInput(
                f"--keep {col!r} is not a column of the input (it has: {', '.join(columns)})",
                details={"field": "keep", "column": col},
            )
        if col in OUTPUT_COLUMNS or col.startswith("probability_"):
            raise InvalidInput(
                f"--keep {col!r} would clash with the output column of the same name",
                details={"field": "keep", "column": col},
            )
    return features


def _job_key(model: PinnedModel, input_ref: str, output: str, opts: BatchOptions) -> str:
    what = {
        "model": model.digest,
        "input": input_ref,
        "output": output,
        "chunk_rows": opts.chunk_rows,
        "keep": opts.keep,
        "proba": opts.proba,
        "runtime": opts.runtime,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def sweep_abandoned(root: str | Path, older_than_s: float) -> Swept:
    """Remove the job directories under ``root`` (``$STRATA_HOME/scoring``) that no process
    runs and that nothing was written to for ``older_than_s`` seconds: the finished chunks of a
    job killed and never run again. A running job holds its lock and is kept; so is a newer
    one, which a rerun would resume. Each directory is removed holding its lock, so a rerun
    starting meanwhile waits for nothing half-deleted (it is refused, then starts afresh)."""
    import fcntl

    names: list[str] = []
    size = 0
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return Swept([], 0)
    now = time.time()
    for entry in entries:
        job = Path(entry.path)
        if now - _last_written(job) < older_than_s:
            continue
        try:
            with open(job / ".lock", "a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # running
                bytes_ = _tree_bytes(job)
                shutil.rmtree(job, ignore_errors=True)
        except OSError:
            continue
        if not job.exists():
            names.append(entry.name)
            size += bytes_
    return Swept(sorted(names), size)


def _last_written(job: Path) -> float:
    """The newest modification time of the job's description and chunk files."""
    newest = job.stat().st_mtime
    for folder in (job, job / "chunks"):
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as it:
            for f in it:
                if f.name != ".lock":
                    newest = max(newest, f.stat(follow_symlinks=False).st_mtime)
    return newest


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


class _locked:
    """An exclusive lock on the job's directory (Conflict when another process holds it)."""

    def __init__(self, job: _Job) -> None:
        self.job = job

    def __enter__(self) -> None:
        import fcntl

        (self.job.dir / "chunks").mkdir(parents=True, exist_ok=True)
        self.fh = open(self.job.dir / ".lock", "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise Conflict(
                f"This scoring job ({self.job.model.label} over {self.job.input_ref} into "
                f"{self.job.output!r}) is running in another process; wait for it to finish",
                details={"job": self.job.dir.name},
            ) from None

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _write_description(job: _Job) -> None:
    doc = {
        "model": job.model.record(),
        "input": job.input_ref,
        "output": job.output,
        "options": job.options.model_dump(mode="json"),
        "rows": job.rows,
        "chunks": job.chunks,
    }
    (job.dir / "job.json").write_text(json.dumps(doc, indent=2))


def _finished_chunks(job: _Job) -> set[int]:
    """Chunks whose files are complete (right row count, readable footer); others removed."""
    import pyarrow.parquet as pq

    done = set()
    for path in sorted((job.dir / "chunks").iterdir()):
        name = path.name
        index = int(name[5:11]) if name.startswith("part-") and name[5:11].isdigit() else -1
        try:
            ok = 0 <= index < job.chunks and (
                pq.ParquetFile(path).metadata.num_rows == job.expected_rows(index)
            )
        except Exception:
            ok = False
        if ok:
            done.add(index)
        else:
            path.unlink(missing_ok=True)
    return done


def _chunks(job: _Job, services: Services) -> Iterator[tuple[int, pa.Table]]:
    """The input's needed columns in exact chunks of ``chunk_rows`` rows, in row order."""
    import pyarrow as pa

    columns = list(dict.fromkeys([*job.features, *job.options.keep]))
    rel = services.data.duckdb(job.input_ref)
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    reader = rel.project(quoted).fetch_record_batch(min(job.options.chunk_rows, 1_000_000))
    size, index = job.options.chunk_rows, 0
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in reader:
        while batch.num_rows:
            take = min(size - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            have += take
            batch = batch.slice(take)
            if have == size:
                yield index, pa.Table.from_batches(pending)
                index, pending, have = index + 1, [], 0
    if have:
        yield index, pa.Table.from_batches(pending)


def _run(
    services: Services,
    job: _Job,
    executor: str,
    workers: int,
    threads: int,
    progress: Progress | None,
    stop: threading.Event | None = None,
) -> None:
    from strata.serving.batch_executors import open_executor

    rows_done = sum(job.expected_rows(i) for i in job.done)
    with open_executor(executor, job.model, job.options, workers, threads) as pool:
        pending: dict[Any, tuple[int, pa.Table]] = {}
        limit = workers * 2

        def drain(block_until: int) -> None:
            nonlocal rows_done
            while len(pending) > block_until:
                for handle, predictions in pool.completed(list(pending)):
                    index, kept = pending.pop(handle)
                    _write_chunk(job, index, kept, predictions)
                    rows_done += kept.num_rows
                    if progress is not None:
                        progress(rows_done, job.rows)

        for index, table in _chunks(job, services):
            if index in job.done:
                continue
            if stop is not None and stop.is_set():
                drain(0)  # what is in flight is written: a rerun resumes after it
                raise BatchCancelled(
                    f"Scoring into {job.output} was cancelled after {rows_done:,} of "
                    f"{job.rows:,} rows; run the same job again to resume",
                    details={"rows_done": rows_done, "rows": job.rows},
                )
            handle = pool.submit(table.select(job.features), job.options.proba)
            pending[handle] = (index, table.select(job.options.keep))
            drain(limit - 1)
        drain(0)


def _write_chunk(job: _Job, index: int, kept: pa.Table, predictions: pa.Table) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = index * job.options.chunk_rows
    if predictions.num_rows != kept.num_rows:
        raise InvalidInput(
            f"The model returned {predictions.num_rows} predictions for chunk {index}'s "
            f"{kept.num_rows} rows",
            details={"chunk": index},
        )
    table = pa.table({"_row": pa.array(np.arange(start, start + kept.num_rows, dtype=np.int64))})
    for name in kept.column_names:
        table = table.append_column(name, kept.column(name))
    for name in predictions.column_names:
        table = table.append_column(name, predictions.column(name))
    final = job.chunk_path(index)
    tmp = final.with_name(f".{final.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    faults.point("serving.batch.chunk")  # a chunk is durable, the job is not finished


def _publish(services: Services, job: _Job) -> Any:
    """The chunks, in order, as a new version of the output (parents, transform, run)."""
    missing = [i for i in range(job.chunks) if not job.chunk_path(i).exists()]
    if missing and job.rows:
        raise Conflict(
            f"Chunks {missing[:5]} of the scoring job are missing after the run; rerun it",
            details={"missing": missing[:20]},
        )
    record = job.model.record()
    code = json.dumps(
        {"model": record, "options": job.options.model_dump(mode="json")}, sort_keys=True
    )
    source: Any = _stream_chunks(job) if job.rows else _empty(job)
    published = services.data.ingest(
        source,
        job.output,
        parents=[job.input_ref],
        run_id=job.model.run_id,
        transform={"kind": "predict", "name": f"predict {job.model.label}", "code": code},
        source_info={"scoring": {"model": record, "input": job.input_ref}},
        description=job.options.description or f"{job.model.label} over {job.input_ref}",
        profile=job.options.profile,
    )
    faults.point("serving.batch.published")  # the version exists, the job dir too
    return published


def _stream_chunks(job: _Job) -> pa.RecordBatchReader:
    """The chunk files, in order, as one Arrow stream (embedded: staged like any ingest;
    remote: uploaded as one body)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [job.chunk_path(i) for i in range(job.chunks)]
    schema = pq.read_schema(paths[0])

    def batches() -> Iterator[pa.RecordBatch]:
        for path in paths:
            yield from pq.ParquetFile(path).iter_batches(batch_size=65_536)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _empty(job: _Job) -> pa.Table:
    import pyarrow as pa

    return pa.table({"_row": pa.array([], pa.int64()), "prediction": pa.array([], pa.float64())})
