"""Failed ingests and transforms are audited: decorators for the embedded data service.

A failure the committer already recorded (inside its audited transaction) is not recorded
twice; any other — a refused source, rows that are not objects, each sandbox refusal of a
transform's SQL — gets one record (rate-limited per caller and action,
:mod:`strata.governance.events`) naming the source with secrets masked and SQL replaced by
its sha256, like a successful ingest's record (:func:`strata.data.commit.audit_source`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from strata.governance import events

log = logging.getLogger("strata.audit")
F = TypeVar("F", bound=Callable[..., Any])
Describe = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


def _ingest(a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from strata.data.commit import audit_source  # the write path: imported where used

    source, options, label = a["source"], a["options"], a.get("label")
    info: dict[str, Any] = {}
    if (options.sql_url or options.connection) and isinstance(source, str):
        info["query"] = source
    elif label is not None:
        info["uri"] = label
    elif isinstance(source, str | os.PathLike):
        info["uri"] = os.fspath(source)
    else:
        info["kind"] = type(source).__name__
    if options.sql_url is not None:
        info["sql_url"] = options.sql_url
    if options.connection is not None:
        info["connection"] = options.connection
    return str(a["name"]), audit_source(info)


def _push(a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return str(a["name"]), {"source": {"kind": "push"}}


def _transform(a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    options = a["options"]  # transform_with(options, fn=...): a TransformOptions
    inputs, sql = options.inputs, options.sql
    details: dict[str, Any] = {
        "inputs": list(inputs.values()) if isinstance(inputs, dict) else list(inputs),
        "output": options.output,
        "language": "sql" if sql is not None else "python",
    }
    if isinstance(sql, str):
        details["sql_sha256"] = hashlib.sha256(sql.encode()).hexdigest()
    return str(options.output), details


def _failures_audited(action: str, describe: Describe) -> Callable[[F], F]:
    def decorate(method: F) -> F:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                resource_id, details = describe(bound.arguments)
            except Exception:  # a wrong call: the method itself reports it
                return method(self, *args, **kwargs)
            with events.failures_audited(
                self.db,
                self.refusal_limit,
                action=action,
                resource_type="dataset",
                resource_id=resource_id,
                details=details,
            ):
                return method(self, *args, **kwargs)

        return cast(F, wrapper)

    return decorate


ingest_audited = _failures_audited("data.ingest", _ingest)
push_audited = _failures_audited("data.ingest", _push)
transform_audited = _failures_audited("data.transform", _transform)
