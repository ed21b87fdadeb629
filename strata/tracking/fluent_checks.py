"""The fluent API's checks of what a logging call is given, before anything is buffered: keys
(validated once, then remembered in :data:`ok_keys`), param and tag values (length), and a
param logged again with another value (params are immutable). The buffers and the writer are
:mod:`strata.tracking.fluent`'s; these raise at the call, where the caller can see it."""

from __future__ import annotations

from strata.core.errors import Conflict, InvalidInput
from strata.tracking.models import MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH

ok_keys: set[str] = set()
"""Keys that passed :func:`check_key` (at most 100,000 remembered): a logging call's check is
then one set lookup."""


def check_key(key: object, kind: str) -> str:
    # Imported here, on a cache miss only: `import strata` stays light.
    from strata.tracking.validation import validate_key

    validate_key(key, kind)
    if len(ok_keys) < 100_000:
        ok_keys.add(key)  # type: ignore[arg-type]
    return key  # type: ignore[return-value]


def param_item(
    logged: dict[str, str], run_id: str, key: str, value: object
) -> tuple[str, str] | None:
    """``(key, str(value))`` to buffer, or None when ``logged`` (the run's params known to this
    process) already holds that value; raises InvalidInput (a bad key, a value too long) or
    Conflict (another value logged before)."""
    if key not in ok_keys:
        check_key(key, "param")
    v = _within(str(value), "param", key, MAX_PARAM_VALUE_LENGTH)
    old = logged.get(key)
    if old is None:
        return key, v
    if old != v:
        raise Conflict(
            f"Param {key!r} of run {run_id} was logged as {old!r}; it cannot "
            f"change to {v!r} (params are immutable)",
            details={"key": key, "old_value": old, "new_value": v},
        )
    return None


def tag_value(key: str, value: object) -> str:
    """``str(value)`` of a tag; raises InvalidInput for a bad key or a value too long."""
    if key not in ok_keys:
        check_key(key, "tag")
    return _within(str(value), "tag", key, MAX_TAG_VALUE_LENGTH)


def _within(v: str, kind: str, key: str, limit: int) -> str:
    if len(v) > limit:
        raise InvalidInput(
            f"{kind.capitalize()} {key!r} value is {len(v)} characters; the limit is {limit}",
            details={"field": f"{kind}.value"},
        )
    return v
