"""Relative paths inside a store (artifact paths), checked once for every layer."""

from __future__ import annotations

import re

from strata.core.errors import InvalidInput

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def safe_relpath(path: str) -> str:
    """Normalise a relative artifact path to ``a/b/c`` (drops ``.``, empty and trailing parts).

    Raises InvalidInput for empty or absolute paths, drive letters, backslashes, NUL bytes and
    any ``..`` component (even one that would cancel out).
    """

    def bad(rule: str) -> InvalidInput:
        msg = f"invalid artifact path {path!r}: {rule}"
        return InvalidInput(msg, details={"path": path, "rule": rule})

    if "\x00" in path:
        raise bad("must not contain NUL bytes")
    if "\\" in path:
        raise bad("must use '/' as separator, not backslashes")
    if path.startswith("/"):
        raise bad("must be relative, not absolute")
    if _DRIVE_RE.match(path):
        raise bad("must not start with a drive letter")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise bad("must not contain '..' components")
    if not parts:
        raise bad("must not be empty")
    return "/".join(parts)
