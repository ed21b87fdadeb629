"""Stream scoring: records from a Kafka topic or Redis stream in, predictions out, in
micro-batches, at least once.

The loop, per batch:

1. poll up to ``batch_size`` records or for ``batch_seconds``;
2. decode each value as a JSON object; the batch's feature columns become one Arrow table
   (typed from the model's signature) and numpy arrays, predicted in one
   :meth:`~strata.models.model.Model.predict_arrays` call;
3. send one output per input record, keyed by the input's id (the ``id_field`` of the
   JSON object, else the Kafka message key, else ``<partition>:<offset>``): a JSON object
   ``{"id", "prediction", ["probabilities"], "model", "version", "source"}`` — or, for a
   record that cannot be scored (not JSON, a missing or mistyped feature), ``{"id",
   "error", "model", "version", "source"}``: every input gets an output;
4. flush the sink: every output is durable at the output broker;
5. only then commit the batch's positions at the input (Kafka offsets of the consumer
   group, Redis XACK).

A crash anywhere (even SIGKILL) loses nothing: on restart the group resumes from its
committed positions (Redis: from its oldest entry delivered and not acknowledged), so a
batch whose outputs were produced but not yet committed is scored again — duplicates are
possible (the same id twice), losses are not. Crash points: ``serving.stream.produced``
(outputs durable, input not committed) and ``serving.stream.committed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from strata.core import faults
from strata.core.errors import InvalidInput, StrataError
from strata.serving.batch_model import PinnedModel, Services, default_services, pin

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from strata.backends.streams import StreamRecord, StreamSink, StreamSource
    from strata.models.model import Model

log = logging.getLogger(__name__)

_ARROW_TYPES = {"float64": "float64", "float32": "float32", "int64": "int64", "int32": "int32",
                "bool": "bool", "str": "string", "object": "string"}  # fmt: skip


class StreamOptions(BaseModel):
    """How a stream scorer batches and stops (``strata predict stream`` flags)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(1000, ge=1, le=1_000_000)
    batch_seconds: float = Field(1.0, gt=0, le=3600)
    #: Stop after this many batches (None: no limit).
    max_batches: int | None = Field(None, ge=1)
    #: Stop after this many seconds without a record (None: never).
    idle_seconds: float | None = Field(None, gt=0)
    #: The input consumer group (default ``strata-predict-<model name>``).
    group: str | None = Field(None, min_length=1, max_length=200)
    #: The JSON field holding each input's id.
    id_field: str = Field("id", min_length=1, max_length=200)
    #: Add ``probabilities`` ({label: p}) to each output (classifiers).
    proba: bool = False
    runtime: str = Field("native", pattern="^(native|onnx|onnx-int8)$")
    trusted: bool = False


class StreamResult(BaseModel):
    """What one run of a stream scorer did."""

    source: str
    sink: str
    model: dict[str, str | None]
    group: str
    batches: int = 0
    records: int = 0
    predictions: int = 0
    errors: int = 0
    commit_failures: int = 0
    seconds: float = 0.0
    stopped: str = ""


#: ``on_batch(records_in_batch, totals_so_far)`` after a batch's outputs are durable and
#: its positions committed.
OnBatch = Callable[[int, StreamResult], None]


def score_stream(
    model: str,
    source: str,
    sink: str,
    options: StreamOptions | None = None,
    *,
    client: Services | None = None,
    stop: threading.Event | None = None,
    on_batch: OnBatch | None = None,
    **option_fields: Any,
) -> StreamResult:
    """Score the records of ``source`` (``kafka://HOST:PORT/TOPIC``,
    ``redis://HOST:PORT/DB?stream=NAME``) with ``model`` into ``sink`` (same URI forms)
    until ``max_batches``, ``idle_seconds`` or ``stop`` (see the module doc). Options are
    the fields of :class:`StreamOptions`.

    Raises InvalidInput (bad ref, URI or option; a model without named input columns),
    NotFound (unknown model or Kafka topic), Unavailable (a broker unreachable, or an output
    not delivered: its input is then not committed)."""
    from strata.backends.streams import open_sink, open_source
    from strata.core.parse import parse_options
    from strata.models.store import load
    from strata.models.tracked import release

    opts = parse_options(StreamOptions, options, **option_fields)
    services = client or default_services()
    pinned = pin(services, model)
    try:
        loaded = load(pinned.path, trusted=opts.trusted)
        loaded.runtime(opts.runtime)  # type: ignore[arg-type]  # checked by StreamOptions
        features = _features(pinned)
        group = opts.group or f"strata-predict-{pinned.name or 'model'}"
        src = open_source(source, group=group)
        with open_sink(sink) as out:
            scorer = _Scorer(pinned, loaded, features, opts, src, out)
            return scorer.run(stop, on_batch)
    finally:
        release(pinned.path)  # a models:/ download: never left in $STRATA_HOME/tmp


def _features(model: PinnedModel) -> list[tuple[str, str]]:
    signature = model.spec.signature
    if signature is None or signature.is_tensor:
        raise InvalidInput(
            f"Stream scoring needs a model whose signature names its input columns; "
            f"{model.label} " + ("has no signature" if signature is None else "takes a tensor"),
            details={"field": "model"},
        )
    return [(s.name, s.dtype) for s in signature.inputs]


class _Scorer:
    def __init__(
        self,
        model: PinnedModel,
        loaded: Model,
        features: list[tuple[str, str]],
        options: StreamOptions,
        source: StreamSource,
        sink: StreamSink,
    ) -> None:
        import pyarrow as pa

        self.model, self.loaded, self.features, self.options = model, loaded, features, options
        self.source, self.sink = source, sink
        self.schema = pa.schema(
            [pa.field(n, pa.type_for_alias(_ARROW_TYPES.get(t, "string"))) for n, t in features]
        )
        self.meta = {"model": model.name or model.uri, "version": model.version}
        self.result = StreamResult(
            source=source.display, sink=sink.display, model=model.record(),
            group=options.group or f"strata-predict-{model.name or 'model'}",
        )  # fmt: skip
        self.positions: dict[str, Any] = {}

    def run(self, stop: threading.Event | None, on_batch: OnBatch | None) -> StreamResult:
        o, result = self.options, self.result
        started = last_seen = time.monotonic()
        self.source.start(None)  # the group's committed positions: at least once
        try:
            while True:
                if stop is not None and stop.is_set():
                    result.stopped = "stop"
                    break
                if o.max_batches is not None and result.batches >= o.max_batches:
                    result.stopped = "max_batches"
                    break
                records = self._poll(stop)
                now = time.monotonic()
                if not records:
                    if o.idle_seconds is not None and now - last_seen >= o.idle_seconds:
                        result.stopped = "idle"
                        break
                    continue
                last_seen = now
                self._batch(records)
                result.seconds = time.monotonic() - started
                if on_batch is not None:
                    on_batch(len(records), result)
        finally:
            self.source.close()
        result.seconds = time.monotonic() - started
        return result

    def _poll(self, stop: threading.Event | None) -> list[StreamRecord]:
        o = self.options
        deadline = time.monotonic() + o.batch_seconds
        out: list[StreamRecord] = []
        while len(out) < o.batch_size and not (stop is not None and stop.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            out.extend(self.source.poll(o.batch_size - len(out), min(left, 1.0)))
        return out

    def _batch(self, records: list[StreamRecord]) -> None:
        outputs = self.score(records)
        self.sink.send(outputs)
        self.sink.flush()
        faults.point("serving.stream.produced")  # outputs durable, input not committed
        self.positions = self.source.advance(self.positions, records)
        try:
            self.source.commit(self.positions)
        except StrataError as exc:  # the next commit covers it; a restart repeats the batch
            log.warning("stream %s: commit failed: %s", self.source.display, exc.message)
            self.result.commit_failures += 1
        faults.point("serving.stream.committed")
        self.result.batches += 1
        self.result.records += len(records)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, records: list[StreamRecord]) -> list[tuple[bytes | None, bytes]]:
        """One ``(key, JSON value)`` output per record, in input order."""
        docs: list[dict[str, Any] | None] = []
        errors: dict[int, str] = {}
        for i, r in enumerate(records):
            doc, problem = _decode(r)
            docs.append(doc)
            if problem is not None:
                errors[i] = problem
        good = [i for i in range(len(records)) if i not in errors]
        preds: dict[int, tuple[Any, Any]] = {}
        if good:
            unfit = _unfit()
            try:
                preds = self._predict(good, [docs[i] for i in good])
            except unfit:
                for i in good:  # only on the failure path: find the records that break it
                    try:
                        preds.update(self._predict([i], [docs[i]]))
                    except unfit as exc:
                        errors[i] = _message(exc)
        out: list[tuple[bytes | None, bytes]] = []
        for i, r in enumerate(records):
            ident = self._id(docs[i], r)
            body: dict[str, Any] = {"id": ident}
            if i in errors:
                body["error"] = errors[i]
                self.result.errors += 1
            else:
                label, proba = preds[i]
                body["prediction"] = label
                if proba is not None:
                    body["probabilities"] = proba
                self.result.predictions += 1
            body.update(self.meta)
            body["source"] = f"{self.source.key} {r.label}"
            key = ident if isinstance(ident, str) else orjson.dumps(ident).decode()
            out.append((key.encode(), orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)))
        return out

    def _predict(self, index: list[int], docs: list[Any]) -> dict[int, tuple[Any, Any]]:
        import pyarrow as pa

        struct = pa.array(docs, type=pa.struct(list(self.schema)))
        arrays = {name: _numpy(struct.field(name)) for name in self.schema.names}
        rt: Any = self.options.runtime
        labels = self.loaded.predict_arrays(arrays, runtime=rt).tolist()
        probas: list[Any] = [None] * len(labels)
        if self.options.proba and self.loaded.labels is not None:
            p = self.loaded.predict_proba(arrays, runtime=rt)
            names = [str(lbl) for lbl in self.loaded.labels]
            probas = [dict(zip(names, row, strict=True)) for row in p.tolist()]
        return {i: (labels[k], probas[k]) for k, i in enumerate(index)}

    def _id(self, doc: dict[str, Any] | None, record: StreamRecord) -> Any:
        if doc is not None and doc.get(self.options.id_field) is not None:
            return doc[self.options.id_field]
        if record.key is not None:
            return record.key.decode("utf-8", "replace")
        return f"{record.partition}:{record.offset}"


def _decode(record: StreamRecord) -> tuple[dict[str, Any] | None, str | None]:
    if record.problem is not None:
        return None, record.problem
    if record.value is None:
        return None, "empty record: no value (a tombstone)"
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(doc, dict):
        return None, f"not a JSON object (found {type(doc).__name__})"
    return doc, None


def _numpy(arr: pa.Array) -> np.ndarray:
    import pyarrow as pa

    if arr.null_count and pa.types.is_integer(arr.type):
        arr = arr.cast(pa.float64())
    out: np.ndarray = arr.to_numpy(zero_copy_only=False)
    return out


def _unfit() -> tuple[type[Exception], ...]:
    """Errors saying a record's features do not fit the model's input."""
    import pyarrow as pa

    return (InvalidInput, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)


def _message(exc: Exception) -> str:
    if isinstance(exc, StrataError):
        return exc.message
    return f"a feature does not fit the model's input: {str(exc).splitlines()[0]}"
