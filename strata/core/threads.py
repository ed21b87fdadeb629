"""The one way Strata runs blocking work off an ``async`` event loop, and the operating
system's name of a Strata thread."""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
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


#: prctl's option that names the calling thread (Linux: ``PR_SET_NAME``).
_PR_SET_NAME = 15
#: The longest thread name Linux keeps (16 bytes with the terminating NUL).
OS_NAME_BYTES = 15
_PREFIX = "strata-"


def os_name(name: str) -> bytes:
    """``name`` as the kernel will show it: at most :data:`OS_NAME_BYTES` bytes of ASCII, a
    long ``strata-`` name without its prefix first (``strata-predict_0`` → ``predict_0``)."""
    if len(name) > OS_NAME_BYTES and name.startswith(_PREFIX):
        name = name[len(_PREFIX) :]
    return name.encode("ascii", "replace")[:OS_NAME_BYTES]


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The process's own symbols, libc's among them (find_library would run ldconfig).
        prctl: Callable[..., int] = ctypes.CDLL(None).prctl
        return prctl
    except (OSError, AttributeError):
        return None


def name_os_thread() -> bool:
    """Give the calling thread its Python name in the operating system too (Linux), so
    ``top -H``, ``ps -L``, ``/proc/PID/task/*/comm``, ``perf`` and ``py-spy`` tell Strata's
    threads apart (Python 3.11 leaves every thread named after the process). Whether it
    took; elsewhere a no-op (False)."""
    prctl = _prctl()
    if prctl is None:
        return False
    name = ctypes.c_char_p(os_name(threading.current_thread().name))
    return prctl(_PR_SET_NAME, name, 0, 0, 0) == 0
