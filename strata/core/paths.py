"""Paths: relative paths inside a store (artifact paths), checked once for every layer; and
the local files a path, directory or glob names (what an ingest reads, or a remote client
uploads)."""

from __future__ import annotations

import glob as globlib
import os
import re

from strata.core.errors import InvalidInput, NotFound

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


def is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def hidden_name(path: str) -> bool:
    """Whether the last part of ``path`` starts with ``.`` or ``_`` (skipped in folders)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


def local_files(source: str) -> list[str]:
    """The sorted absolute paths of the files ``source`` names: a file, a directory (its
    files, recursively, skipping hidden ones) or a glob (``**`` recurses); ``file://`` and
    ``~`` are understood. NotFound names the path when nothing is there; InvalidInput when
    a directory holds no files."""
    path = os.path.abspath(os.path.expanduser(source.removeprefix("file://")))
    if is_glob(path):
        found = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise NotFound(f"No file matches {source!r}", details={"source": source})
        return found
    if os.path.isdir(path):
        found = sorted(
            os.path.join(d, f) for d, _, files in os.walk(path) for f in files if not hidden_name(f)
        )
        if not found:
            raise InvalidInput(f"Source directory {path!r} holds no files: nothing to ingest")
        return found
    if not os.path.exists(path):
        raise NotFound(f"Source file {path!r} does not exist", details={"source": path})
    return [path]
