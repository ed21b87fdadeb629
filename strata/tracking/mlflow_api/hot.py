"""The route side of the lean SQLite path of the MLflow logging calls (the store side, and
what it serves and leaves to the regular route, is :mod:`strata.tracking.hot_store`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from strata.governance.deps import bearer_token
from strata.tracking.batch_write import Batch
from strata.tracking.hot_store import HotWriter
from strata.tracking.models import (
    MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS,
    MAX_BATCH_TAGS,
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
)

Body = dict[str, Any]
#: A route's body → (run id, the checked batch), or None when the regular route must serve it.
Parser = Callable[[Body], "tuple[str, Batch] | None"]


def writer(request: Request) -> HotWriter | None:
    """The app's lean writer (``create_app`` sets it), or None where there is no lean path."""
    hot: HotWriter | None = getattr(request.app.state, "hot_writer", None)
    return hot if hot is not None and hot.available else None


_EMPTY = b"{}"
#: JSON of one item beyond its key and value: field names, quotes, the numbers of a metric.
_ITEM_JSON = 256
#: The largest valid logging call in plain JSON (MLflow's limits: 1,000 metrics, 100 params
#: of 6,000 chars, 100 tags of 8,000 chars; about 2 MB). A larger body goes to the regular
#: route, which checks the caller before it decodes the body and the batch limits before it
#: parses an item: decoding and parsing a 60 MB body here, on the event loop, before the token
#: was even looked at, held every other request for seconds. (A valid call past this bound,
#: escaped or non-ASCII text, is served by the regular route, as any declined call.)
MAX_LEAN_BODY = (
    4096
    + MAX_BATCH_METRICS * (MAX_KEY_LENGTH + _ITEM_JSON)
    + MAX_BATCH_PARAMS * (MAX_KEY_LENGTH + MAX_PARAM_VALUE_LENGTH + _ITEM_JSON)
    + MAX_BATCH_TAGS * (MAX_KEY_LENGTH + MAX_TAG_VALUE_LENGTH + _ITEM_JSON)
)


def lean_write(parse: Parser) -> Callable[[Request, bytes], Response | None]:
    """The lean path of one write route: ``(request, raw body) → the response``, or None when
    the regular route must serve the request."""

    def hot(request: Request, raw: bytes) -> Response | None:
        hot_writer = writer(request)
        if hot_writer is None or len(raw) > MAX_LEAN_BODY:
            return None
        token = bearer_token(request)
        if not hot_writer.may_admit(token):  # no token: the regular route's 401, unparsed
            return None
        try:
            body = orjson.loads(raw)
            parsed = parse(body) if isinstance(body, dict) else None
        except Exception:  # the regular route words the error
            return None
        if parsed is None:
            return None
        run_id, batch = parsed
        request_id = getattr(request.state, "request_id", None)
        seq = hot_writer.log(token, request_id, run_id, batch)
        if not seq:
            return None
        response = Response(_EMPTY, media_type="application/json")
        if hot_writer.housekeeping_due(seq):
            response.background = BackgroundTask(hot_writer.housekeeping, seq)
        return response

    return hot
