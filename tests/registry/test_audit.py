"""Every change the registry makes is in the audit log, under its own action."""

from __future__ import annotations

from registry_helpers import log_run

from strata.client import Client


def test_every_registry_change_is_audited() -> None:
    with Client() as client:
        reg = client.registry
        first, second = log_run(client), log_run(client, c=0.3)
        reg.create_model("a", description="first")
        reg.update_model("a", description="changed")
        reg.set_model_tag("a", "team", "ops")
        reg.delete_model_tag("a", "team")
        reg.set_gate("a", None)
        reg.register("a", first)
        reg.register("a", second)
        reg.update_version("a", 1, description="v1")
        reg.set_version_tag("a", 1, "ok", "yes")
        reg.delete_version_tag("a", 1, "ok")
        reg.update_card("a", 1, {"notes": "by the owner"})
        reg.set_alias("a", "canary", 1)
        reg.set_alias("a", "canary", 2)
        reg.rollback("a", "canary")
        reg.delete_alias("a", "canary")
        reg.update_settings({"allow_self_approval": True})
        reg.approve(reg.request_promotion("a", 1, alias="production", reason="best").id)
        reg.reject(reg.request_promotion("a", 2, alias="production", reason="try").id)
        reg.rename_model("a", "b")
        reg.delete_alias("b", "production")
        reg.delete_version("b", 2)
        reg.delete_model("b")
        records = client.governance.list_audit(limit=1000).items
    done = {r.action for r in records if r.outcome == "ok" and r.action.startswith("registry.")}
    assert done >= {
        f"registry.{verb}"
        for verb in (
            "create_model",
            "update_model",
            "set_model_tag",
            "delete_model_tag",
            "set_gate",
            "create_version",
            "update_version",
            "set_version_tag",
            "delete_version_tag",
            "update_card",
            "set_alias",
            "rollback",
            "delete_alias",
            "update_settings",
            "request_promotion",
            "approve",
            "reject",
            "rename_model",
            "delete_version",
            "delete_model",
        )
    }, sorted(done)
