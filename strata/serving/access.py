"""The inference server's access log (``strata.access``): one line per request, with its
request id, status and latency, written in batches.

Handing each request's record to the logging handlers cost ~15 µs of a worker's CPU per
1-row request (a lock, a ``write`` and a ``flush`` syscall per line on the ``strata``
handler's stream). Here a request appends a tuple on the event loop; every
:data:`FLUSH_SECONDS`, or once :data:`MAX_PENDING` lines wait, the lines become ordinary
``LogRecord``s (their time is the request's end) that go through the logger's filters and
each handler's level, filters and formatter as ``Logger.handle`` would take them, and a
plain ``StreamHandler`` gets the batch in one write. Any other handler (files, queues, a
test's capture) gets each record through its own ``handle``. A line reaches the log at most
:data:`FLUSH_SECONDS` after its request answered; shutdown writes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time

access = logging.getLogger("strata.access")

FLUSH_SECONDS = 0.05
MAX_PENDING = 256

_Line = tuple[float, str, str, int, float, str]


class AccessLog:
    """The access lines of one worker's event loop (not thread-safe: call on the loop)."""

    def __init__(self, logger: logging.Logger = access) -> None:
        self.logger = logger
        self.pending: list[_Line] = []
        self._timer: asyncio.TimerHandle | None = None
        self._template: dict[str, object] | None = None
        """A record's fields that are the same for every line this loop writes (logger,
        level, source, thread, process): ``LogRecord.__init__`` works them out anew each
        time (~3 µs); a line's record is this dict plus its own fields."""

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def add(self, method: str, path: str, status: int, start: float, request_id: str) -> None:
        """Queue the line of a request that started at ``start`` (``perf_counter``)."""
        now = time.perf_counter()
        self.pending.append((time.time(), method, path, status, (now - start) * 1000, request_id))
        if len(self.pending) >= MAX_PENDING:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called off a loop: write now
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write every queued line."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self.pending = self.pending, []
        if not lines:
            return
        records = [r for r in map(self._record, lines) if self.logger.filter(r)]
        logger: logging.Logger | None = self.logger
        while logger is not None:
            for handler in logger.handlers:
                _emit(handler, records)
            logger = logger.parent if logger.propagate else None

    def _record(self, line: _Line) -> logging.LogRecord:
        """The ``LogRecord`` that ``LogRecord(...)`` would make for ``line`` in this thread,
        its time the request's end."""
        created, method, path, status, ms, request_id = line
        if self._template is None:
            self._template = self._fresh((method, path, status, ms)).__dict__.copy()
        record = _blank(logging.LogRecord)
        fields = record.__dict__
        fields.update(self._template)
        fields["args"] = (method, path, status, ms)
        fields["created"] = created
        fields["msecs"] = (created - int(created)) * 1000
        fields["relativeCreated"] = (created - _START) * 1000
        fields["request_id"] = request_id
        fields["status"] = status
        fields["route"] = path
        return record

    def _fresh(self, args: tuple[object, ...]) -> logging.LogRecord:
        return logging.LogRecord(
            self.logger.name, logging.INFO, __file__, 0, "%s %s %s %.2fms", args, None
        )


def _start() -> float:
    """When the logging module loaded (the origin of ``relativeCreated``)."""
    probe = logging.LogRecord("", 0, "", 0, "", (), None)
    return probe.created - probe.relativeCreated / 1000


_blank = object.__new__
_START = _start()


def _emit(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
    """``handler.handle`` for each record; a plain ``StreamHandler`` in one write."""
    mine = [r for r in records if r.levelno >= handler.level]
    if type(handler) is not logging.StreamHandler:
        for record in mine:
            handler.handle(record)
        return
    text = []
    for record in mine:
        if not handler.filter(record):
            continue
        try:
            text.append(handler.format(record) + handler.terminator)
        except Exception:
            handler.handleError(record)
    if not text:
        return
    handler.acquire()
    try:
        handler.stream.write("".join(text))
        handler.flush()
    except Exception:
        handler.handleError(mine[-1])
    finally:
        handler.release()
