"""What a firing rule does: notify (webhook, the log) and act (retrain, roll back an alias,
take the canary's traffic away). Each action is audited with the rule and the values that
fired it; a failing action is recorded and does not stop the next one."""

from __future__ import annotations

import functools
import logging
from typing import Any, Protocol

from strata.core.errors import StrataError
from strata.governance.audit import record as audit_record
from strata.monitoring import webhook
from strata.monitoring.jobs import ActionJobs
from strata.monitoring.models import (
    AlertRule,
    CanaryOffAction,
    RetrainAction,
    RollbackAction,
    WebhookAction,
)
from strata.registry.service import RegistryService
from strata.serving.service import ServingService
from strata.tracking.service import TrackingService

log = logging.getLogger("strata.monitoring")


class Peers(Protocol):
    """The services actions use (a :class:`strata.Client` is one)."""

    @property
    def tracking(self) -> TrackingService: ...

    @property
    def data(self) -> Any: ...

    @property
    def registry(self) -> RegistryService: ...

    @property
    def serving(self) -> ServingService: ...


def _retrain(peers: Peers, rule: AlertRule, action: RetrainAction) -> dict[str, Any]:
    from strata.training.job import train

    tags = {"strata.monitoring.rule": rule.name, "strata.monitoring.model": rule.model}
    result = train(action.config, action.overrides, client=peers, tags=tags)
    return {"run_id": result.run_id, "model_uri": result.model_uri, "metrics": result.metrics}


def _rollback(peers: Peers, rule: AlertRule, action: RollbackAction) -> dict[str, Any]:
    move = peers.registry.rollback(rule.model, action.alias, reason=f"alert rule {rule.name}")
    return {"alias": action.alias, "from_version": move.from_version, "to_version": move.to_version}


def _canary_off(peers: Peers, rule: AlertRule, action: CanaryOffAction) -> dict[str, Any]:
    endpoint = action.endpoint or rule.model
    policy = peers.serving.get_traffic_policy(endpoint)
    before = {t.model: t.weight for t in policy.canary}
    off = [t.model_copy(update={"weight": 0.0}) for t in policy.canary]
    peers.serving.set_traffic_policy(endpoint, policy.model_copy(update={"canary": off}))
    return {"endpoint": endpoint, "canary_weights_before": before}


def run(
    db: Any,
    peers: Peers,
    rule: AlertRule,
    context: dict[str, Any],
    jobs: ActionJobs | None = None,
) -> list[dict[str, Any]]:
    """Run ``rule``'s actions in order; one result per action (``type``, ``ok``, details or
    ``error``). With ``jobs``, a retraining is queued there (``status: queued``, the event's
    entry updated when it ends) instead of holding up the caller for the whole training."""
    results: list[dict[str, Any]] = []
    for index, action in enumerate(rule.actions):
        result: dict[str, Any] = {"type": action.type}
        audit = {"rule": rule.name, "expr": rule.expr, "value": context["value"],
                 "event": context["event"]}  # fmt: skip
        try:
            if isinstance(action, WebhookAction):
                sent = webhook.send(
                    action.url, context, secret_env=action.secret_env, retries=action.retries
                )
                result |= sent
                audit |= {"url": action.url, "status": sent["status"], "ok": sent["ok"]}
            else:
                # the decision, before the effect (which the acting layer audits too)
                audit_record(db, f"monitoring.action.{action.type}", "alert_rule", rule.name, audit)
                if isinstance(action, RetrainAction) and jobs is not None:
                    work = functools.partial(_retrain, peers, rule, action)
                    result |= jobs.submit(context["event"], index, action.type, audit, work)
                elif isinstance(action, RetrainAction):
                    result |= _retrain(peers, rule, action) | {"ok": True}
                elif isinstance(action, RollbackAction):
                    result |= _rollback(peers, rule, action) | {"ok": True}
                else:
                    result |= _canary_off(peers, rule, action) | {"ok": True}
        except StrataError as exc:
            result |= {"ok": False, "error": exc.message}
        except Exception as exc:  # an action's own failure is recorded, not raised
            log.exception("alert %s: action %s failed", rule.name, action.type)
            result |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if isinstance(action, WebhookAction):
            audit_record(db, "monitoring.action.webhook", "alert_rule", rule.name, audit)
        results.append(result)
    return results
