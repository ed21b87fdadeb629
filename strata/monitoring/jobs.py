"""Long alert actions (a retraining job) off the evaluating thread.

A firing must not hold up the evaluation pass (the scheduler's next rules, a REST call
waiting on ``POST /rules/evaluate``): such an action is queued here and its entry in the
event's ``detail.actions`` says ``status: queued``; one worker thread runs the jobs in
order, turning the entry into ``running``, then ``succeeded`` (with its details) or
``failed`` (with the error), and audits the outcome (``monitoring.action.<type>.done``).
The queue is bounded (``MAX_PENDING``): an action arriving when it is full is recorded as
failed at once, never dropped silently.

A job is *held* until its event's detail is written (:meth:`ActionJobs.release`), so the
job's own updates never race with that first write. Jobs run in the caller's context (its
principal: ``strata-alerts`` for the scheduler). :meth:`ActionJobs.close` (the client's
``close``, so a server's shutdown) waits for the running job and records the queued ones as
failed ("stopped before it started") instead of leaving them ``queued``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import sqlalchemy as sa

from strata.core.errors import StrataError
from strata.core.staging import owner_gone, process_owner
from strata.governance.audit import append as audit_append
from strata.governance.audit import maybe_checkpoint
from strata.governance.audit import record as audit_record
from strata.monitoring.tables import MonAlertEventRow

log = logging.getLogger("strata.monitoring")
MAX_PENDING = 16
PENDING = ("queued", "running")
"""The states of an action not finished yet."""
Work = Callable[[], dict[str, Any]]


class ActionJobs:
    """A bounded queue of alert actions and the one thread that runs them."""

    def __init__(self, db: Any, max_pending: int = MAX_PENDING) -> None:
        self.db = db
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._held: dict[int, list[Callable[[], None]]] = {}
        self._pending = 0
        self._futures: set[Future[None]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def submit(
        self, event: int, index: int, kind: str, audit: dict[str, Any], work: Work
    ) -> dict[str, Any]:
        """Queue ``work`` as action ``index`` of ``event``; the entry to record now."""
        job = uuid.uuid4().hex[:12]
        with self._lock:
            if self._pending >= self.max_pending:
                return {
                    "ok": False,
                    "status": "failed",
                    "error": f"{self.max_pending} alert actions are already queued; "
                    f"this {kind} was not started",
                }
            self._pending += 1
            ctx = contextvars.copy_context()
            self._held.setdefault(event, []).append(
                lambda: ctx.run(self._run, event, index, kind, audit | {"job": job}, work)
            )
        return {"ok": None, "status": "queued", "job": job, "owner": process_owner()}

    def release(self, event: int) -> None:
        """Start ``event``'s held jobs (its detail is written)."""
        with self._lock:
            held = self._held.pop(event, [])
            closed = self._closed
            if held and not closed:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="strata-alert-action")
                for start in held:
                    future = self._pool.submit(start)
                    self._futures.add(future)
                    future.add_done_callback(self._futures.discard)
        if closed:  # each records itself as stopped, at once (outside the lock it takes)
            for start in held:
                start()

    def wait(self, timeout: float | None = None) -> bool:
        """Until every released job is done (or ``timeout`` s); True when none is left."""
        with self._lock:
            futures = set(self._futures)
        _, left = wait(futures, timeout=timeout)
        return not left

    def close(self) -> None:
        """Stop taking jobs: the queued ones are recorded as failed without running; returns
        once the running one has finished (and recorded its outcome)."""
        with self._lock:
            self._closed = True
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=True)

    def _run(self, event: int, index: int, kind: str, audit: dict[str, Any], work: Work) -> None:
        try:
            if self._closed:
                result = {"ok": False, "status": "failed",
                          "error": f"the server stopped before this {kind} started"}  # fmt: skip
                self._finish(event, index, kind, audit, result)
                return
            self._update(event, index, {"status": "running"})
            try:
                result = {"ok": True, "status": "succeeded"} | work()
            except StrataError as exc:
                result = {"ok": False, "status": "failed", "error": exc.message}
            except Exception as exc:  # the job's own failure is recorded, not raised
                log.exception("alert action %s (event %s) failed", kind, event)
                result = {"ok": False, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            self._finish(event, index, kind, audit, result)
        except Exception:  # the database itself failed: the job is lost, the log says so
            log.exception("alert action %s (event %s): its outcome was not recorded", kind, event)
        finally:
            with self._lock:
                self._pending -= 1

    def _finish(
        self, event: int, index: int, kind: str, audit: dict[str, Any], result: dict[str, Any]
    ) -> None:
        self._update(event, index, result)
        done = audit | {"ok": result["ok"]} | _brief(result)
        audit_record(self.db, f"monitoring.action.{kind}.done", "alert_rule", audit["rule"], done)

    def _update(self, event: int, index: int, fields: dict[str, Any]) -> None:
        with self.db.write() as session:
            row = session.get(MonAlertEventRow, event, with_for_update=True)
            if row is None:
                return
            detail = json.loads(row.detail)
            actions = detail.get("actions", [])
            if index < len(actions):
                actions[index] = actions[index] | fields
                row.detail = json.dumps(detail, default=str)


def reconciled(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` as it stands: a ``queued`` or ``running`` action whose server process is gone
    (killed, crashed: :meth:`ActionJobs.close` never ran) shown ``failed``, saying so, instead
    of waiting forever. Only a process of this host can be known gone; another host's entry
    is shown as recorded."""
    actions = detail.get("actions")
    if not isinstance(actions, list):
        return detail
    shown = []
    for action in actions:
        if (
            isinstance(action, dict)
            and action.get("status") in PENDING
            and owner_gone(action.get("owner"))
        ):
            owner = action["owner"]
            was = action["status"]
            action = action | {
                "ok": False,
                "status": "failed",
                "error": f"the server process that {'ran' if was == 'running' else 'queued'} "
                f"this {action.get('type', 'action')} (pid {owner['pid']} on "
                f"{owner['host']}) stopped before it finished",
            }
        shown.append(action)
    return detail | {"actions": shown}


def settle_orphans(db: Any) -> int:
    """Write down as failed the queued or running actions whose server process is gone
    (:func:`reconciled`), each with an audit record closing it
    (``monitoring.action.<type>.done``, ``ok: false``, in the same transaction), so the
    stored event, and not only what readers are shown, says how it ended; the actions
    settled. Run once per process, when its action queue starts
    (:attr:`strata.monitoring.embedded.EmbeddedMonitoring.jobs`). Another host's actions are
    left as recorded: only a process of this host can be known gone."""
    pending = sa.or_(*(MonAlertEventRow.detail.like(f'%"status": "{s}"%') for s in PENDING))
    with db.read() as session:
        ids = list(session.execute(sa.select(MonAlertEventRow.id).where(pending)).scalars())
    settled = 0
    for event in ids:  # one transaction each: a live job's own update waits on this row only
        seqs = []
        with db.write() as session:
            row = session.get(MonAlertEventRow, event, with_for_update=True)
            if row is None:
                continue
            detail = json.loads(row.detail)
            shown = reconciled(detail)
            if shown == detail:
                continue
            row.detail = json.dumps(shown, default=str)
            for was, now in zip(detail["actions"], shown["actions"], strict=True):
                if was == now:
                    continue
                kind = now.get("type", "action")
                brief = {"rule": row.rule, "event": row.id, "job": now.get("job"), "ok": False}
                seqs.append(
                    audit_append(
                        db,
                        session,
                        action=f"monitoring.action.{kind}.done",
                        resource_type="alert_rule",
                        resource_id=row.rule,
                        details=brief | {"error": now["error"]},
                    )
                )
        for seq in seqs:
            maybe_checkpoint(db, seq)
        settled += len(seqs)
    return settled


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("run_id", "model_uri", "error") if k in result}
