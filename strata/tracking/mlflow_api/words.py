"""MLflow's own checks of logged names and values, in its order and words (3.x,
``mlflow.utils.validation``), for the MLflow surface only: Strata's REST keeps its own.

The checks run in the MLflow routes before a call reaches the tracking service, whose own
checks then find nothing to refuse. What MLflow accepts by truncating (a param value over
6,000 characters, a tag value over 8,000, with ``MLFLOW_TRUNCATE_LONG_VALUES`` on, its
default) is truncated here too, with the warning MLflow's server logs.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from typing import Any

from strata.core.errors import InvalidInput
from strata.tracking.models import MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH

log = logging.getLogger("strata.tracking")

_NAME = re.compile(r"^[/\w.\- :]*$")
_BAD_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colon(:) and slashes (/)."
)


def invalid_value(path: str, value: Any, message: str) -> InvalidInput:
    """MLflow's ``invalid_value`` sentence for ``path``."""
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return InvalidInput(
        f"Invalid value {shown} for parameter '{path}' supplied: {message}",
        details={"field": path},
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_passed: set[str] = set()
"""Names found valid (the common case: a training loop's few keys, checked once each)."""


def check_name(name: str, path: str) -> None:
    """A metric, param or tag name at ``path``: MLflow's characters, then that it names
    itself when treated as a file path."""
    if name in _passed:
        return
    if not _NAME.match(name):
        raise invalid_value(path, name, _BAD_CHARACTERS)
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(("..", "/")):
        raise invalid_value(
            path,
            name,
            "Names may be treated as files in certain cases, and must not resolve to other "
            f"names when treated as such. This name would resolve to {norm!r}",
        )
    if len(_passed) < 100_000 and len(name) <= MAX_KEY_LENGTH:  # (a long one is refused next)
        _passed.add(name)


def check_length(entity: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidInput(
            f"'{entity}' exceeds the maximum length of {limit} characters",
            details={"field": entity},
        )


def _truncated(entity: str, value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters as MLflow's server cuts it (or refused, with
    ``MLFLOW_TRUNCATE_LONG_VALUES=false``)."""
    if len(value) <= limit:
        return value
    if os.environ.get("MLFLOW_TRUNCATE_LONG_VALUES", "true").strip().lower() in ("false", "0"):
        check_length(entity, value, limit)
    log.warning(
        "%s '%s...' (%d characters) is truncated to %d characters to meet the length limit.",
        entity,
        value[:100],
        len(value),
        limit,
    )
    return value[:limit]


def metric_key(key: str, path: str = "") -> str:
    check_name(key, _join(path, "name"))
    check_length("Metric name", key, MAX_KEY_LENGTH)
    return key


def param(key: str, value: str, path: str = "") -> tuple[str, str]:
    check_name(key, _join(path, "key"))
    check_length("Param key", key, MAX_KEY_LENGTH)
    return key, _truncated("Param value", value, MAX_PARAM_VALUE_LENGTH)


def tag(key: str, value: str, path: str = "") -> tuple[str, str]:
    check_name(key, _join(path, "key"))
    check_length(_join(path, "key"), key, MAX_KEY_LENGTH)
    return key, _truncated(_join(path, "value"), value, MAX_TAG_VALUE_LENGTH)
