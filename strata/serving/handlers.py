"""The prediction routes of the inference server (:class:`~strata.serving.app.ServingApp`
mixes them in): OIP v2 model metadata and ``infer``, MLflow's ``/invocations``, Strata JSON
``predict`` and ``explain``. Every prediction and explanation passes the worker's in-flight
limit and lands in the metrics; bodies over :data:`DECODE_INLINE_BYTES` are decoded in a
worker thread (``core/threads.run_blocking``), so a large request never stalls the event
loop that the 1-row requests share.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

import numpy as np
import orjson
from starlette.types import Receive, Scope

from strata.core.errors import InvalidInput, NotFound, StrataError, Unavailable
from strata.core.threads import run_blocking
from strata.serving import formats, oip
from strata.serving.endpoints import Endpoint, not_ready
from strata.serving.routing import PredictFailed

if TYPE_CHECKING:
    from strata.serving.endpoints import Endpoints
    from strata.serving.metrics import ServingMetrics
    from strata.serving.routing import Router

import logging

log = logging.getLogger("strata.serving")

_T = TypeVar("_T")
Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]
JSON_HEADERS = [(b"content-type", b"application/json")]
_JSON = JSON_HEADERS
_RETRY = [(b"retry-after", b"1")]

DECODE_INLINE_BYTES = 64 * 1024
"""Bodies up to this size are decoded on the event loop (a 1-row request decodes in a few
µs, less than a thread hop); larger ones in a worker thread."""


class HttpError(Exception):
    """An error answer. ``counted``: already in the metrics (an admitted request's error,
    counted when its place is released); the app counts the others (a body refused before
    admission: malformed, too large, an unknown model)."""

    def __init__(
        self,
        status: int,
        error: StrataError,
        headers: list[tuple[bytes, bytes]],
        *,
        counted: bool = False,
    ):
        self.status = status
        self.error = error
        self.headers = headers
        self.counted = counted


READS = "strata.reads"
"""Scope key: False when the caller's token may only predict (a service token): a model's
load error (it may name paths, buckets or URLs) is then not shown (:func:`load_error`)."""
HIDDEN_LOAD_ERROR = "failed to load; GET /v1/endpoints with a user's token shows why"


def load_error(scope: Scope, error: str | None) -> str | None:
    """``error`` as this caller may see it: itself, or a pointer to where it is shown."""
    if error is None or scope.get(READS, True):
        return error
    return HIDDEN_LOAD_ERROR


ENDPOINT = "strata.endpoint"
"""The scope key where a prediction handler leaves the endpoint it resolved (the app labels
the metrics of a request refused before admission with it)."""

PROTOCOLS = {"_infer": "oip", "_invocations": "mlflow", "_strata": "strata"}
"""The prediction handlers (by name) and the protocol label of their requests."""


async def decode(size: int, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)``: inline for a small body, in a worker thread for a large one."""
    if size <= DECODE_INLINE_BYTES:
        return fn(*args)
    return await run_blocking(fn, *args)


class PredictRoutes:
    """The prediction handlers; the app provides the attributes below and ``_body``."""

    endpoints: Endpoints
    router: Router
    metrics: ServingMetrics
    max_in_flight: int
    in_flight: int

    async def _body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        raise NotImplementedError  # ServingApp's

    # -- admission: every prediction and explanation -----------------------------------
    def _admit(self, ep: Endpoint, protocol: str) -> Any:
        """Take one of the worker's ``max_in_flight`` places (503 with Retry-After when
        none is free); returns the in-flight gauge to decrement in :meth:`_release`."""
        metrics = self.metrics
        if self.in_flight >= self.max_in_flight:
            metrics.add(
                metrics.child(metrics.requests, ep.name, ep.ref.name, "", protocol, "", "503")
            )
            raise HttpError(
                503,
                Unavailable(
                    f"The server is at its limit of {self.max_in_flight} requests in flight; "
                    "retry shortly",
                    details={"max_in_flight": self.max_in_flight},
                ),
                _RETRY,
                counted=True,
            )
        self.in_flight += 1
        gauge = metrics.child(metrics.in_flight, ep.name)
        metrics.add(gauge)
        return gauge

    def _release(
        self,
        ep: Endpoint,
        gauge: Any,
        *,
        model: str,
        version: str,
        protocol: str,
        code: str,
        start: float,
    ) -> None:
        self.in_flight -= 1
        metrics = self.metrics
        metrics.add(gauge, -1.0)
        elapsed = time.perf_counter() - start
        metrics.observe(metrics.child(metrics.latency, ep.name, model, version), elapsed)
        stats = self.router.stats.setdefault(ep.name, {})
        stats["requests"] = stats.get("requests", 0.0) + 1
        stats["latency_s"] = stats.get("latency_s", 0.0) + elapsed
        if code != "200":
            stats["errors"] = stats.get("errors", 0.0) + 1
            metrics.add(
                metrics.child(metrics.requests, ep.name, model, version, protocol, "", code)
            )

    def _oip_target(self, rest: str) -> tuple[Endpoint, str | None, str]:
        """``{m}[/versions/{v}][/suffix]`` → endpoint, version, suffix."""
        parts = [unquote(p) for p in rest.split("/")] if "%" in rest else rest.split("/")
        name, version, suffix = parts[0], None, ""
        tail = parts[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if len(tail) > 1:
            raise HttpError(404, NotFound(f"No endpoint /v2/models/{rest}"), [])
        suffix = tail[0] if tail else ""
        return self._endpoint(name), version, suffix

    def _endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints.get(name)
        except NotFound as exc:
            raise HttpError(404, exc, []) from None

    async def _model_get(
        self, scope: Scope, _r: Receive, _h: dict[str, str], _id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        ep, version, suffix = self._oip_target(scope["path"][len("/v2/models/") :])
        if suffix not in ("", "ready"):
            raise HttpError(404, NotFound(f"No endpoint {scope['path']}"), [])
        try:
            served = ep.by_version(version) if version is not None else ep.primary
        except NotFound as exc:
            raise HttpError(404, exc, []) from None
        if suffix == "ready":
            ready = served is not None
            doc = {"name": ep.name, "ready": ready, "version": served.version if served else None}
            if not ready:
                doc["error"] = load_error(scope, ep.error)
            return (200 if ready else 503), orjson.dumps(doc), _JSON
        if served is None:
            raise HttpError(503, not_ready(ep), [(b"retry-after", b"1")])
        return 200, orjson.dumps(oip.model_metadata(served)), _JSON

    # -- predictions -------------------------------------------------------------------
    async def _predict(
        self,
        ep: Endpoint,
        columns: Any,
        *,
        version: str | None,
        request_id: str,
        sticky: str | None,
        protocol: str,
        start: float,
        log_fields: tuple[str | None, float, int] | None = None,
    ) -> Any:
        """``log_fields``: the request's entity key, start and body bytes for the prediction log,
        when the answer is sent as predicted (:meth:`Router.run`)."""
        gauge = self._admit(ep, protocol)
        code = "500"
        model, ver = ep.ref.name, ""
        try:
            outcome = await self.router.run(
                ep,
                columns,
                version=version,
                request_id=request_id,
                sticky=sticky,
                log_fields=log_fields,
            )
            model, ver = outcome.served.name, outcome.served.version
            code = "200"
            return outcome
        except InvalidInput as exc:
            code = "422"
            raise HttpError(422, exc, [], counted=True) from None
        except NotFound as exc:
            code = "404"
            raise HttpError(404, exc, [], counted=True) from None
        except Unavailable as exc:
            code = "503"
            raise HttpError(503, exc, [(b"retry-after", b"1")], counted=True) from None
        except PredictFailed as exc:
            log.error(
                "endpoint %s: the model raised: %s", ep.name, exc, extra={"request_id": request_id}
            )
            raise HttpError(
                500,
                StrataError(
                    f"The model failed to predict (request id {request_id}); the server log "
                    "has the details",
                    details={"request_id": request_id, "endpoint": ep.name},
                ),
                [],
                counted=True,
            ) from None
        finally:
            self._release(
                ep, gauge, model=model, version=ver, protocol=protocol, code=code, start=start
            )

    def _done(
        self,
        ep: Endpoint,
        outcome: Any,
        protocol: str,
        request_id: str,
        start: float,
        key: str | None,
        body_bytes: int,
        matrix: Any = None,
    ) -> list[tuple[bytes, bytes]]:
        served = outcome.served
        rows = len(outcome.prediction.prediction)
        stats = self.router.stats.setdefault(ep.name, {})
        stats[outcome.path] = stats.get(outcome.path, 0.0) + 1
        metrics = self.metrics
        metrics.add(
            metrics.child(
                metrics.requests,
                ep.name,
                served.name,
                served.version,
                protocol,
                outcome.path,
                "200",
            )
        )
        metrics.add(
            metrics.child(metrics.rows, ep.name, served.name, served.version, outcome.path), rows
        )
        elapsed = (time.perf_counter() - start) * 1000
        self.router.record(ep, outcome, request_id, elapsed, key, body_bytes, matrix)
        return [
            (b"x-strata-model-version", served.version.encode()),
            (b"x-strata-path", outcome.path.encode()),
        ]

    def _unrendered(self, ep: Endpoint, outcome: Any, protocol: str) -> None:
        """Count a request whose answer could not be rendered after a good predict (admitted,
        so already counted once by :meth:`_release`): an error of the version that served it,
        with code 400."""
        stats = self.router.stats.setdefault(ep.name, {})
        stats["errors"] = stats.get("errors", 0.0) + 1
        metrics = self.metrics
        served = outcome.served
        metrics.add(
            metrics.child(
                metrics.requests, ep.name, served.name, served.version, protocol, "", "400"
            )
        )

    def _sticky(self, ep: Endpoint, headers: dict[str, str], doc: Any, columns: Any) -> str | None:
        """The request's sticky key (the endpoint's ``sticky_key``): ``header:NAME``'s
        value, or for ``field:NAME`` a top-level field of the body (Strata JSON's ``key``,
        OIP's ``parameters``), else the request's input ``NAME`` (its first row's value);
        None when the request has none (the request id places it)."""
        kind, _, name = ep.policy.sticky_key.partition(":")
        if kind == "header":
            return headers.get(name.lower())
        if isinstance(doc, dict) and name in doc:
            return str(doc[name])
        if isinstance(columns, dict):
            values = columns.get(name)
            if isinstance(values, np.ndarray) and values.ndim == 1 and len(values):
                first = values[0]
                return first.decode() if isinstance(first, bytes) else str(first)
        return None

    async def _infer(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        start = time.perf_counter()
        ep, version, suffix = self._oip_target(scope["path"][len("/v2/models/") :])
        scope[ENDPOINT] = ep
        if suffix != "infer":
            raise HttpError(404, NotFound(f"No endpoint {scope['path']}"), [])
        body = await self._body(receive, headers)
        try:
            req = await decode(
                len(body), oip.parse_infer, body, headers.get("inference-header-content-length")
            )
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        try:
            shape_of = ep.by_version(version) if version is not None else ep.primary
            if shape_of is None:
                raise not_ready(ep)
            columns = oip.to_columns(shape_of, req.inputs)
        except NotFound as exc:
            raise HttpError(404, exc, []) from None
        except Unavailable as exc:
            raise HttpError(503, exc, [(b"retry-after", b"1")]) from None
        except InvalidInput as exc:
            raise HttpError(422, exc, []) from None
        sticky = self._sticky(ep, headers, req.parameters, columns)
        outcome = await self._predict(
            ep,
            columns,
            version=version,
            request_id=request_id,
            sticky=sticky,
            protocol="oip",
            start=start,
            # outputs named: the answer may still fail (400), so it is logged once sent
            log_fields=None if req.outputs else (sticky, start, len(body)),
        )
        try:
            body_out, extra = oip.render_infer(outcome.served, outcome.prediction, req, request_id)
        except InvalidInput as exc:  # e.g. an output name the model has not
            self._unrendered(ep, outcome, "oip")
            raise HttpError(400, exc, [], counted=True) from None
        matrix = (
            None if outcome.slot is not None else _matrix_of(req.inputs, columns, outcome.checked)
        )
        marks = self._done(ep, outcome, "oip", request_id, start, sticky, len(body), matrix)
        return 200, body_out, [(k.encode(), v.encode()) for k, v in extra.items()] + marks

    def _only(self) -> Endpoint:
        eps = list(self.endpoints.endpoints.values())
        if len(eps) != 1:
            served = sorted(self.endpoints.endpoints)
            raise HttpError(
                404,
                NotFound(
                    "/invocations answers for a server with one model; this one serves "
                    f"{', '.join(served)}: use /v1/models/NAME/predict or /v2/models/NAME/infer",
                    details={"served": served},
                ),
                [],
            )
        return eps[0]

    async def _invocations(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        start = time.perf_counter()
        ep = self._only()
        scope[ENDPOINT] = ep
        body = await self._body(receive, headers)
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            raise HttpError(
                415,
                InvalidInput(
                    f"/invocations takes application/json here, not {ctype}",
                    details={"received": ctype},
                ),
                [],
            )
        try:
            columns = await decode(len(body), _mlflow, body)
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        sticky = self._sticky(ep, headers, None, columns)
        outcome = await self._predict(
            ep,
            columns,
            version=None,
            request_id=request_id,
            sticky=sticky,
            protocol="mlflow",
            start=start,
            log_fields=(sticky, start, len(body)),
        )
        marks = self._done(ep, outcome, "mlflow", request_id, start, sticky, len(body))
        return 200, formats.mlflow_response(outcome.prediction), [*_JSON, *marks]

    def _strata_target(self, path: str) -> tuple[Endpoint, str | None, str]:
        rest = path[len("/v1/models/") :]
        ref, _, action = rest.rpartition("/")
        ref = unquote(ref)
        version = None
        if "@" in ref:
            name, _, alias = ref.partition("@")
            ep = self._endpoint(name)
            if ep.ref.alias != alias:
                raise HttpError(
                    404,
                    NotFound(
                        f"Endpoint {ep.name!r} serves {ep.ref.text}, not alias {alias!r}",
                        details={"endpoint": ep.name, "served": ep.ref.text},
                    ),
                    [],
                )
        elif "/" in ref:
            name, _, version = ref.partition("/")
            ep = self._endpoint(name)
        else:
            ep = self._endpoint(ref)
        return ep, version, action

    async def _strata(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        start = time.perf_counter()
        ep, version, action = self._strata_target(scope["path"])
        scope[ENDPOINT] = ep
        body = await self._body(receive, headers)
        try:
            doc, columns, key = await decode(len(body), _strata_doc, body)
        except InvalidInput as exc:
            raise HttpError(400, exc, []) from None
        if action == "explain":
            return await self._explain(ep, version, columns, request_id, start)
        sticky = self._sticky(ep, headers, doc, columns)
        outcome = await self._predict(
            ep,
            columns,
            version=version,
            request_id=request_id,
            sticky=sticky,
            protocol="strata",
            start=start,
            log_fields=(key, start, len(body)),
        )
        marks = self._done(ep, outcome, "strata", request_id, start, key, len(body))
        body_out = formats.strata_response(
            outcome.served, outcome.prediction, request_id=request_id, path=outcome.path
        )
        return 200, body_out, [*_JSON, *marks]

    async def _explain(
        self, ep: Endpoint, version: str | None, columns: Any, request_id: str, start: float
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Per-row SHAP attributions: through the in-flight limit and into the metrics
        like a prediction (protocol ``explain``); computed in a worker thread."""
        from strata.serving.explain import explain_rows

        gauge = self._admit(ep, "explain")
        code, model, ver = "500", ep.ref.name, ""
        try:
            try:
                served = ep.by_version(version) if version is not None else ep.primary
            except NotFound as exc:
                code = "404"
                raise HttpError(404, exc, [], counted=True) from None
            if served is None:
                code = "503"
                raise HttpError(
                    503,
                    Unavailable(f"Endpoint {ep.name!r} is not ready"),
                    _RETRY,
                    counted=True,
                )
            model, ver = served.name, served.version
            try:
                checked = served.check(columns)
                doc = await run_blocking(explain_rows, served, checked)
            except InvalidInput as exc:
                code = "422"
                raise HttpError(422, exc, [], counted=True) from None
            code = "200"
        finally:
            self._release(
                ep, gauge, model=model, version=ver, protocol="explain", code=code, start=start
            )
        self.metrics.add(
            self.metrics.child(
                self.metrics.requests, ep.name, model, ver, "explain", "primary", "200"
            )
        )
        doc.update({"model": served.name, "version": served.version, "request_id": request_id})
        return 200, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), _JSON


def _matrix_of(tensors: list[Any], columns: Any, checked: dict[str, Any]) -> Any:
    """The one ``[n, k]`` input tensor whose columns, in order, are the checked inputs (OIP's
    batched input of a column model, unchanged by the checks: the views ``to_columns`` made
    are the very arrays checked), else None. The prediction log queues it whole."""
    if not checked or len(tensors) != 1 or not isinstance(columns, dict):
        return None
    if len(columns) != len(checked):
        return None
    matrix = tensors[0].array
    if matrix.ndim != 2 or matrix.shape[1] != len(checked):
        return None
    if not all(map(operator.is_, checked.values(), columns.values())):
        return None
    if next(iter(checked.values())).ndim != 1:  # a tensor input (the matrix itself)
        return None
    return matrix


def _mlflow(body: bytes) -> Any:
    return formats.mlflow_columns(formats.loads(body))


def _strata_doc(body: bytes) -> tuple[Any, Any, str | None]:
    doc = formats.loads(body)
    columns, key = formats.strata_columns(doc)
    return doc, columns, key
