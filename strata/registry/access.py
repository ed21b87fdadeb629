"""What every part of the embedded registry checks: the caller's permission, page tokens and
page sizes."""

from __future__ import annotations

from strata.core.errors import InvalidInput, PermissionDenied
from strata.core.page import decode_page_token
from strata.core.principal import Permission, current
from strata.registry.models import MAX_VERSION

MAX_RESULTS = 10_000


def need(permission: Permission, what: str) -> None:
    """PermissionDenied unless the caller's role carries ``permission``."""
    principal = current().principal
    if not principal.can(permission):
        raise PermissionDenied(
            f"User {principal.name!r} (role {principal.role.value}) may not {what}: it needs "
            f"the {permission.value!r} permission",
            details={"needed": permission.value, "role": principal.role.value},
        )


def page_value(token: str | None, key: str) -> int:
    """The offset or sequence number in a page token, refused past the columns' range."""
    value = decode_page_token(token, key)
    if value > MAX_VERSION:
        raise InvalidInput("Invalid page_token", details={"field": "page_token"})
    return value


def page_size(max_results: int) -> int:
    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise InvalidInput(
            f"max_results must be 1..{MAX_RESULTS}, got {max_results!r}",
            details={"field": "max_results"},
        )
    return max_results
