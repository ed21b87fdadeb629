"""The one way Strata runs blocking work off an ``async`` event loop."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


async def run_blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in an AnyIO worker thread.

    The call context (contextvars: principal, request id) goes along, and ``fn`` may call
    back into the event loop with ``anyio.from_thread`` (how streamed uploads are read).
    """
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
