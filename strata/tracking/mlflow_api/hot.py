"""The route side of the lean SQLite path of the MLflow logging calls (the store side, and
what it serves and leaves to the regular route, is :mod:`strata.tracking.hot_store`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from starlette.types import Scope

from strata.governance.deps import authorization_token
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
#: What the lean path answers: the JSON body of the 200, and the work to run in a worker
#: thread once it is sent (the checkpoints), if any.
Answer = tuple[bytes, "Callable[[], None] | None"]
#: A route's lean path: (the request's ASGI scope, its body) → its answer, or None when the
#: regular route must serve the request. The scope carries the app (``scope["app"]``) and,
#: when the request has one, its id (``scope["state"]["request_id"]``).
Hot = Callable[[Scope, bytes], "Answer | None"]


def writer(app: Any) -> HotWriter | None:
    """The app's lean writer (``create_app`` sets it), or None where there is no lean path."""
    hot: HotWriter | None = getattr(app.state, "hot_writer", None)
    return hot if hot is not None and hot.available else None


def _authorization(scope: Scope) -> str:
    """The first ``Authorization`` header, as the regular route reads it (Starlette's
    ``request.headers.get``: the first of several, latin-1)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return ""


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


def lean_write(parse: Parser) -> Hot:
    """The lean path of one write route (see :data:`Hot`)."""

    def hot(scope: Scope, raw: bytes) -> Answer | None:
        hot_writer = writer(scope["app"])
        if hot_writer is None or len(raw) > MAX_LEAN_BODY:
            return None
        token = authorization_token(_authorization(scope))
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
        request_id = scope.get("state", {}).get("request_id")
        seq = hot_writer.log(token, request_id, run_id, batch)
        if not seq:
            return None
        due = hot_writer.housekeeping_due(seq)
        return _EMPTY, partial(hot_writer.housekeeping, seq) if due else None

    return hot
