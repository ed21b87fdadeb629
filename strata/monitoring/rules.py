"""Alert rules in ``mon_rules``, their firings in ``mon_alert_events``, and one evaluation
pass (what the server's scheduler runs).

Firing is decided inside a write transaction that locks the rule's row and compares the
newest point with the rule's state (``last_key``: the time of the newest point that fired;
``last_fired``), so concurrent evaluators (several server workers) fire a rule once. The
actions run after that commit; their results are written into the event and each one is
audited with the rule and the values.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from strata.core.clock import utcnow
from strata.core.errors import NotFound
from strata.governance.audit import audited
from strata.governance.audit import record as audit_record
from strata.monitoring import alerts, series
from strata.monitoring.jobs import reconciled
from strata.monitoring.models import AlertEvent, AlertRule, RuleState, WebhookAction
from strata.monitoring.tables import MonAlertEventRow, MonRuleRow

log = logging.getLogger("strata.monitoring")
RunActions = Callable[[AlertRule, dict[str, Any]], list[dict[str, Any]]]


def validate(db: Any, rule: AlertRule) -> alerts.Condition:
    """The parsed condition; InvalidInput for a bad expression, an unknown series or a
    webhook URL the policy refuses."""
    from strata.monitoring.webhook import check_url

    cond = alerts.parse(rule.expr)
    alerts.check_series(cond, series.names(db, rule.model))
    for action in rule.actions:
        if isinstance(action, WebhookAction):
            check_url(action.url)
    return cond


def _state(row: MonRuleRow) -> RuleState:
    state = json.loads(row.state or "{}")
    fired = state.get("last_fired")
    return RuleState(
        rule=AlertRule.model_validate_json(row.spec),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_fired_at=dt.datetime.fromisoformat(fired) if fired else None,
        firing=bool(state.get("firing")),
    )


def save(db: Any, rule: AlertRule) -> RuleState:
    validate(db, rule)
    now = utcnow()
    details = {"model": rule.model, "expr": rule.expr, "actions": [a.type for a in rule.actions]}
    with audited(db, "monitoring.save_rule", "alert_rule", rule.name, details) as scope:
        row = scope.session.get(MonRuleRow, rule.name)
        if row is None:
            row = MonRuleRow(name=rule.name, created_at=now, state="{}")
            scope.session.add(row)
        row.model = rule.model
        row.spec = rule.model_dump_json()
        row.enabled = rule.enabled
        row.updated_at = now
        scope.session.flush()
        return _state(row)


def get(db: Any, name: str) -> RuleState:
    with db.read() as session:
        row = session.get(MonRuleRow, name)
        if row is None:
            raise NotFound(f"no alert rule {name!r}", details={"rule": name})
        return _state(row)


def list_all(db: Any, model: str | None = None) -> list[RuleState]:
    q = sa.select(MonRuleRow).order_by(MonRuleRow.name)
    if model is not None:
        q = q.where(MonRuleRow.model == model)
    with db.read() as session:
        return [_state(r) for r in session.execute(q).scalars()]


def delete(db: Any, name: str) -> None:
    with audited(db, "monitoring.delete_rule", "alert_rule", name) as scope:
        row = scope.session.get(MonRuleRow, name)
        if row is None:
            raise NotFound(f"no alert rule {name!r}", details={"rule": name})
        scope.session.delete(row)


def events(db: Any, rule: str | None = None, limit: int = 100) -> list[AlertEvent]:
    q = sa.select(MonAlertEventRow).order_by(MonAlertEventRow.id.desc()).limit(limit)
    if rule is not None:
        q = q.where(MonAlertEventRow.rule == rule)
    with db.read() as session:
        rows = session.execute(q).scalars().all()
    return [_event(r) for r in rows]


def _event(r: MonAlertEventRow) -> AlertEvent:
    return AlertEvent(
        id=r.id,
        rule=r.rule,
        model=r.model,
        fired_at=r.fired_at,
        value=r.value,
        detail=reconciled(json.loads(r.detail)),
    )


def _points(db: Any, cond: alerts.Condition, model: str, now: dt.datetime) -> list[Any]:
    if cond.duration_s is not None:
        since = now - dt.timedelta(seconds=cond.duration_s)
        before = series.read(db, model, cond.series, until=since, limit=1)
        return before + series.read(db, model, cond.series, since=since, until=now + _TICK)
    return series.read(db, model, cond.series, until=now + _TICK, limit=alerts.needed(cond))


_TICK = dt.timedelta(microseconds=1)


def _decide(db: Any, name: str, now: dt.datetime) -> tuple[AlertRule, AlertEvent] | None:
    """Lock the rule, evaluate it, and record a firing; None when it does not fire."""
    with db.write() as session:
        row = session.execute(
            sa.select(MonRuleRow).where(MonRuleRow.name == name).with_for_update()
        ).scalar_one_or_none()
        if row is None or not row.enabled:
            return None
        rule = AlertRule.model_validate_json(row.spec)
        cond = alerts.parse(rule.expr)
        pts = _points(db, cond, rule.model, now)
        state = json.loads(row.state or "{}")
        firing = alerts.fires(cond, pts, now)
        if not firing:
            if state.get("firing"):
                row.state = json.dumps(state | {"firing": False})
            return None
        newest = pts[-1]
        key = newest.ts.isoformat()
        last = state.get("last_fired")
        cooling = last and now - dt.datetime.fromisoformat(last) < dt.timedelta(
            seconds=rule.cooldown_s
        )
        if state.get("last_key") == key or cooling:  # de-duplicated / in cooldown
            row.state = json.dumps(state | {"firing": True})
            return None
        values = [{"ts": p.ts.isoformat(), "value": p.value} for p in pts[-10:]]
        detail = {"expr": rule.expr, "series": cond.series, "points": values, "actions": []}
        event = MonAlertEventRow(
            rule=rule.name,
            model=rule.model,
            fired_at=now,
            value=newest.value,
            detail=json.dumps(detail, default=str),
        )
        session.add(event)
        row.state = json.dumps(
            state | {"firing": True, "last_key": key, "last_fired": now.isoformat()}
        )
        session.flush()
        fired = AlertEvent(
            id=event.id,
            rule=rule.name,
            model=rule.model,
            fired_at=now,
            value=newest.value,
            detail=detail,
        )
    audit_record(db, "monitoring.alert_fired", "alert_rule", rule.name,
                 {"expr": rule.expr, "value": newest.value, "event": fired.id})  # fmt: skip
    return rule, fired


def evaluate(
    db: Any,
    run_actions: RunActions,
    now: dt.datetime | None = None,
    recorded: Callable[[int], None] | None = None,
) -> list[AlertEvent]:
    """One pass over every enabled rule; the firings, with their actions' results.
    ``recorded(event_id)`` is called once an event's action results are written (queued
    jobs start then)."""
    now = now or utcnow()
    fired = []
    for state in list_all(db):
        if not state.rule.enabled:
            continue
        try:
            decided = _decide(db, state.rule.name, now)
        except Exception:  # one broken rule must not stop the others
            log.exception("alert rule %s: evaluation failed", state.rule.name)
            continue
        if decided is None:
            continue
        rule, event = decided
        context = {"rule": rule.name, "model": rule.model, "expr": rule.expr,
                   "value": event.value, "points": event.detail["points"], "event": event.id,
                   "fired_at": event.fired_at.isoformat()}  # fmt: skip
        results = run_actions(rule, context)
        event.detail["actions"] = results
        try:
            with db.write() as session:
                row = session.get(MonAlertEventRow, event.id)
                if row is not None:
                    row.detail = json.dumps(event.detail, default=str)
        finally:  # held jobs start even when the write failed: none stays queued forever
            if recorded is not None:
                recorded(event.id)
        done = ", ".join(f"{r['type']}={outcome(r)}" for r in results)
        log.warning(
            "alert %s fired on %s: %s (value %s); actions: %s",
            rule.name, rule.model, rule.expr, event.value, done or "none",
        )  # fmt: skip
        fired.append(event)
    return fired


def outcome(result: dict[str, Any]) -> str:
    """One action's result in a word: ``ok``, ``failed``, or a queued job's ``status``."""
    if result.get("ok") is None and "status" in result:
        return str(result["status"])
    return "ok" if result.get("ok") else "failed"


def get_events(db: Any, ids: list[int]) -> list[AlertEvent]:
    """Events by id, in the order of ``ids`` (those that exist)."""
    with db.read() as session:
        rows = {r.id: r for r in session.execute(
            sa.select(MonAlertEventRow).where(MonAlertEventRow.id.in_(ids))).scalars()}  # fmt: skip
    return [_event(rows[i]) for i in ids if i in rows]
