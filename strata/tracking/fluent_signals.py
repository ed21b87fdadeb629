"""SIGTERM while a fluent run is active: the run ends KILLED and its buffer is flushed.

While a run is active in the main thread, SIGTERM raises ``SystemExit(143)`` there (after
chaining to a previously installed Python handler), so ``with`` blocks unwind; the previous
handler is restored when the outermost run ends.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from strata.tracking.models import RunStatus


class SigtermGuard:
    """The SIGTERM handler of the fluent API and whether it fired."""

    def __init__(self) -> None:
        self.terminated = False
        self._prev: Any = None
        #: The installed handler (one bound method, so ``signal.getsignal`` can be compared).
        self.handler = self._handle

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        prev = self._prev
        if callable(prev):
            prev(signum, frame)  # may raise (e.g. SystemExit); if it returns, the process lives
            self.terminated = False
            return
        raise SystemExit(128 + signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        prev = signal.getsignal(signal.SIGTERM)
        if prev is signal.SIG_IGN or prev is self.handler:
            return
        self._prev = prev
        signal.signal(signal.SIGTERM, self.handler)

    def restore(self) -> None:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is self.handler
        ):
            signal.signal(signal.SIGTERM, self._prev if self._prev is not None else signal.SIG_DFL)

    def status_for(self, exc: BaseException) -> RunStatus:
        """The status a run ends with when ``exc`` leaves its block."""
        if self.terminated or isinstance(exc, KeyboardInterrupt):
            return RunStatus.KILLED
        if isinstance(exc, SystemExit):
            return RunStatus.FINISHED if exc.code in (None, 0) else RunStatus.FAILED
        return RunStatus.FAILED if isinstance(exc, Exception) else RunStatus.KILLED
