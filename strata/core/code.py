"""Code identity and Python transforms: a function's source, a repository's commit, and
calling a transform function on its input frames.

Shared by the embedded data service and the remote client (a Python transform runs where
the caller is), so both record the same transform for the same function.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import textwrap
from collections.abc import Callable
from typing import Any

from strata.core.arrow import ArrowData, as_arrow_data
from strata.core.errors import InvalidInput


def function_code(fn: Callable[..., Any]) -> tuple[str, str, str | None]:
    """(name, source text, file) of ``fn``; the source falls back to a bytecode listing when
    Python cannot find it (a lambda typed at a prompt), so the digest still changes with it."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    try:
        code = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        raw = getattr(fn, "__code__", None)
        code = f"# source unavailable; bytecode of {name}\n" + (
            raw.co_code.hex() + repr(raw.co_consts) if raw is not None else repr(fn)
        )
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    return str(name), code, path


def git_commit(path: str | None = None) -> str | None:
    """The HEAD commit of the git repository holding ``path`` (a file or directory; default
    the working directory), or None outside a repository or without git."""
    where = path or os.getcwd()
    if os.path.isfile(where):
        where = os.path.dirname(where)
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where or ".",
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) >= 40 else None


def run_python_transform(
    fn: Callable[..., Any], frames: dict[str, Any], by_name: bool, commit: str | None
) -> tuple[ArrowData, str, dict[str, Any]]:
    """Call ``fn`` on the input frames (by keyword when ``by_name``, else positionally in
    order) and return its result as Arrow, the function's name and the transform record
    (``{"kind": "python", "name", "code", "git_commit"}``; ``commit`` overrides the commit
    of the function's repository). InvalidInput when the result is not tabular."""
    fname, code, path = function_code(fn)
    out = fn(**frames) if by_name else fn(*frames.values())
    data = as_arrow_data(out)
    if data is None:
        raise InvalidInput(
            f"Transform function {fname} returned {type(out).__name__}; return a DataFrame, "
            "an Arrow table or an Arrow stream",
            details={"field": "fn"},
        )
    record = {
        "kind": "python",
        "name": fname,
        "code": code,
        "git_commit": commit or git_commit(path),
    }
    return data, fname, record
