"""Rules for tracking input: keys, values, statuses, views, page sizes, run names."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from strata.core.errors import Conflict, InvalidInput
from strata.core.parse import parse_enum
from strata.tracking.models import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    LifecycleStage,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)

_KEY_RE = re.compile(r"^[\w\-. /:]+$")
_ADJ = (
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "eager",
    "fair",
    "gentle",
    "glad",
    "keen",
    "lively",
    "lucid",
    "merry",
    "nimble",
    "proud",
    "quick",
    "sharp",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "zesty",
)
_NOUN = (
    "ant",
    "bat",
    "bee",
    "cod",
    "crow",
    "deer",
    "dove",
    "eel",
    "elk",
    "finch",
    "fox",
    "gnu",
    "hare",
    "hawk",
    "ibis",
    "jay",
    "koi",
    "lark",
    "lynx",
    "mole",
    "newt",
    "owl",
    "puma",
    "ram",
    "seal",
    "stork",
    "trout",
    "wolf",
    "wren",
    "yak",
)


def generate_run_name() -> str:
    return f"{random.choice(_ADJ)}-{random.choice(_NOUN)}-{random.randint(1, 999)}"


_valid_keys: set[str] = set()


def validate_key(key: object, kind: str) -> str:
    """Metric/param/tag keys: 1-250 of letters, digits, ``_ - . / :`` and space; no ``..``."""
    if isinstance(key, str) and key in _valid_keys:
        return key
    if not isinstance(key, str) or not key:
        raise InvalidInput(
            f"{kind} key must be a non-empty string, got {key!r}", details={"field": f"{kind}.key"}
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}",
            details={"field": f"{kind}.key"},
        )
    if (
        not _KEY_RE.match(key)
        or any(part == ".." for part in key.split("/"))
        or key.startswith("/")
    ):
        raise InvalidInput(
            f"Invalid {kind} key {key!r}: use letters, digits, underscores, dashes, periods, "
            "spaces, slashes and colons, without '..' path segments or a leading '/'",
            details={"field": f"{kind}.key"},
        )
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def parse_status(value: RunStatus | str) -> RunStatus:
    return parse_enum(RunStatus, value, "status", what="run status", upper=True)


def view_condition(col: Any, view: ViewType | str) -> list[Any]:
    v = parse_enum(ViewType, view, "view", what="view type", upper=True)
    if v is ViewType.ACTIVE_ONLY:
        return [col == LifecycleStage.ACTIVE.value]
    if v is ViewType.DELETED_ONLY:
        return [col == LifecycleStage.DELETED.value]
    return []


def check_max_results(n: int, limit: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= limit:
        raise InvalidInput(
            f"max_results must be between 1 and {limit}, got {n!r}",
            details={"field": "max_results"},
        )


def param_map(params: Sequence[Param]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params:
        validate_key(k, "param")
        v = str(v)
        if len(v) > MAX_PARAM_VALUE_LENGTH:
            raise InvalidInput(
                f"Param {k!r} value is {len(v)} characters; the limit is {MAX_PARAM_VALUE_LENGTH}",
                details={"field": "param.value", "key": k},
            )
        if k in out and out[k] != v:
            raise Conflict(
                f"Param {k!r} appears twice in one batch with different values "
                f"{out[k]!r} and {v!r}",
                details={"key": k},
            )
        out[k] = v
    return out


def tag_map(tags: Sequence[RunTag]) -> dict[str, str]:
    """Validate tags (the last value of a key wins)."""
    out: dict[str, str] = {}
    for k, v in tags:
        validate_key(k, "tag")
        v = str(v)
        if len(v) > MAX_TAG_VALUE_LENGTH:
            raise InvalidInput(
                f"Tag {k!r} value is {len(v)} characters; the limit is {MAX_TAG_VALUE_LENGTH}",
                details={"field": "tag.value"},
            )
        out[k] = v
    return out
