"""Security events and refused writes in the audit log, rate-limited.

Three kinds of failure are recorded besides the failures :func:`strata.governance.audit.audited`
already records inside a service's transaction:

- **401 and 403 answers** (``auth.unauthenticated``, ``auth.denied``), for every method: who
  (the principal, or ``anonymous`` with the peer address), the route template, the path;
- **refused writes** of the routes that take data in (ingest, upload, rows, transforms): the
  4xx a router or request validation answers before any service runs;
- **failed ingests and transforms** inside the data service (a sandbox refusal, an
  unreadable source), recorded by :func:`record_failure`.

A flood must not flood the log: :class:`EventLimiter` admits ``burst`` records per key
(principal or peer address + route) per ``window`` seconds; the rest are counted, and the
next admitted record of that key carries ``"suppressed": n`` (how many similar events were
not written one by one). The counts live in the server process (each worker counts its own).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from strata.backends.db import Database
from strata.core.errors import StrataError
from strata.core.principal import current
from strata.governance import audit

log = logging.getLogger("strata.audit")

AUDITED_MARK = audit.AUDITED_MARK
#: At most this many keys are tracked; beyond it, events share one key per route.
MAX_KEYS = 10_000


@dataclass
class _Window:
    start: float
    seen: int = 0
    suppressed: int = 0


class EventLimiter:
    """Admits ``burst`` events per key per ``window`` seconds; counts the rest."""

    def __init__(self, window: float = 60.0, burst: int = 1) -> None:
        self.window = window
        self.burst = burst
        self._keys: dict[tuple[str, ...], _Window] = {}
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, ...]) -> int | None:
        """None when the event is only counted; else the number of events of ``key``
        suppressed since its last record (0 for none)."""
        now = time.monotonic()
        with self._lock:
            if key not in self._keys and len(self._keys) >= MAX_KEYS:
                self._purge(now)
                if len(self._keys) >= MAX_KEYS:  # many distinct callers: one key per route
                    key = ("(many)", *key[1:])
            state = self._keys.get(key)
            if state is None or now - state.start >= self.window:
                carried = state.suppressed if state is not None else 0
                self._keys[key] = _Window(start=now, seen=1)
                return carried
            state.seen += 1
            if state.seen <= self.burst:
                return 0
            state.suppressed += 1
            return None

    def _purge(self, now: float) -> None:
        for key in [k for k, w in self._keys.items() if now - w.start >= self.window]:
            if self._keys[key].suppressed == 0:
                del self._keys[key]


def auth_limiter() -> EventLimiter:
    """401/403: one record per caller and route per minute (with the count of the others)."""
    return EventLimiter(window=60.0, burst=1)


def refusal_limiter() -> EventLimiter:
    """Refused or failed writes: the first 20 per caller and action per minute in full."""
    return EventLimiter(window=60.0, burst=20)


def security_event(
    db: Database,
    limiter: EventLimiter,
    *,
    action: str,
    resource_id: str,
    who: str,
    outcome: str,
    details: dict[str, Any],
) -> bool:
    """Record a 401/403 (rate-limited by ``who`` + ``action``, the method and route
    template); True when a record was written.

    Never raises: a refusal is answered whether or not the audit write succeeds."""
    suppressed = limiter.admit((who, action))
    if suppressed is None:
        return False
    extra = {"suppressed": suppressed} if suppressed else {}
    try:
        with db.write() as session:
            seq = audit.append(
                db,
                session,
                action=action,
                resource_type="route",
                resource_id=resource_id,
                outcome=outcome,
                details=details | extra,
            )
        audit.maybe_checkpoint(db, seq)
    except Exception:
        log.exception("could not audit %s on %s", action, resource_id)
        return False
    return True


def record_failure(
    db: Database,
    limiter: EventLimiter,
    exc: BaseException,
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    details: dict[str, Any],
    who: str,
    code: str | None = None,
) -> None:
    """Audit a refused or failed write once (rate-limited per ``who`` + ``action``) and mark
    ``exc`` so an outer layer does not record it again; ``code`` names the error when ``exc``
    is not a StrataError. Never raises."""
    if getattr(exc, AUDITED_MARK, False):
        return
    with suppress(AttributeError):  # some exception types take no attributes
        setattr(exc, AUDITED_MARK, True)
    suppressed = limiter.admit((who, action))
    if suppressed is None:
        return
    if code is None and isinstance(exc, StrataError):
        code = exc.error_code
    outcome = f"error:{code}" if code else "error"
    message = exc.message if isinstance(exc, StrataError) else type(exc).__name__
    extra = {"suppressed": suppressed} if suppressed else {}
    try:
        with db.write() as session:
            seq = audit.append(
                db,
                session,
                action=action,
                resource_type=resource_type,
                resource_id=resource_id,
                outcome=outcome,
                details=details | {"error": message[:500]} | extra,
            )
        audit.maybe_checkpoint(db, seq)
    except Exception:
        log.exception("could not audit the failed %s of %s", action, resource_id)


@contextmanager
def failures_audited(
    db: Database,
    limiter: EventLimiter,
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    details: dict[str, Any],
) -> Iterator[None]:
    """Run the body; if it raises, audit the failure (unless recorded already) and re-raise."""
    try:
        yield
    except Exception as exc:
        record_failure(
            db,
            limiter,
            exc,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            details=details,
            who=current().principal.name,
        )
        raise
