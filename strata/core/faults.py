"""Fault injection for crash tests: kill the process, or fail a call, at a named point.

Code that must survive a crash at some moment marks the moment with :func:`point`::

    faults.point("data.publish.transaction")

Off by default: ``STRATA_FAULT`` is read once, at import, and with it unset :func:`point` is
one comparison against ``None``. A crash test sets it in the environment of the process it
starts, as comma-separated entries ``NAME[@N][:ACTION]``:

- ``NAME`` / ``NAME@N``: on the first (N-th) arrival at the point, the process sends itself
  SIGKILL — a real kill, nothing runs after it (no ``finally``, no ``atexit``, no flush);
- ``NAME:fail`` / ``NAME@N:fail``: every arrival (from the N-th on) raises
  :class:`~strata.core.errors.Unavailable`, as a lost connection would.

Points in use (grep ``faults.point`` for the full list):

- ``data.publish.transaction`` — inside the audited transaction that publishes a version,
  after every row (version, files, stream positions) is written, before the commit;
- ``data.stream.committed`` — a stream batch is durable in the metadata DB, its positions
  are not yet committed at the broker;
- ``data.stream.compaction`` — a compaction has read part of the version it rewrites;
- ``data.stream.source_commit`` — the broker commit (with ``:fail``: the broker refuses it).
- ``training.checkpoint`` — a PyTorch fit's checkpoint is stored in the run's artifacts.
- ``serving.batch.chunk`` / ``serving.batch.published`` — a batch scoring chunk is durable /
  the output version exists, the job directory too.
- ``serving.stream.produced`` / ``serving.stream.committed`` — a stream batch's outputs are
  durable at the output broker, its input not yet committed / committed.
"""

from __future__ import annotations

import os
import signal

from strata.core.errors import InvalidInput, Unavailable

ENV = "STRATA_FAULT"


def _parse(spec: str) -> dict[str, tuple[int, str]]:
    armed: dict[str, tuple[int, str]] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        where, _, action = entry.partition(":")
        name, _, nth = where.partition("@")
        action = action or "kill"
        if action not in ("kill", "fail") or (nth and not nth.isdigit()) or nth == "0":
            raise InvalidInput(
                f"{ENV}: bad entry {entry!r}; expected NAME[@N][:kill|fail] with N >= 1",
                details={"field": ENV},
            )
        armed[name] = (int(nth or 1), action)
    return armed


_ARMED: dict[str, tuple[int, str]] | None = _parse(os.environ[ENV]) if os.environ.get(ENV) else None
_SEEN: dict[str, int] = {}


def point(name: str) -> None:
    """Mark a crash point (a no-op unless ``STRATA_FAULT`` arms ``name``; see the module)."""
    if _ARMED is None or name not in _ARMED:
        return
    nth, action = _ARMED[name]
    _SEEN[name] = seen = _SEEN.get(name, 0) + 1
    if seen < nth:
        return
    if action == "fail":
        raise Unavailable(f"injected failure at {name} ({ENV})", details={"fault": name})
    if seen == nth:
        os.kill(os.getpid(), signal.SIGKILL)
