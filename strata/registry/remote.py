"""The registry interface over HTTP (``strata.Client("http://...").registry``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from strata.core.page import Page
from strata.core.transport import HttpTransport
from strata.registry.models import (
    AliasMove,
    CardSections,
    Gate,
    ModelVersion,
    PromotionRequest,
    RegisteredModel,
    RegistrySettings,
)
from strata.registry.service import RegistryService

P = "/api/v1/registry"


def _q(text: str | int) -> str:
    return quote(str(text), safe="")


class RemoteRegistry(RegistryService):
    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        return self.http.request(method, f"{P}{path}", **kw)

    def _m(self, name: str) -> str:
        return f"/models/{_q(name)}"

    def _v(self, name: str, version: int | str) -> str:
        return f"/models/{_q(name)}/versions/{_q(version)}"

    # -- models --------------------------------------------------------------------------
    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> RegisteredModel:
        body = {"name": name, "description": description, "tags": tags or {}, "owner": owner}
        return RegisteredModel.model_validate(self._call("POST", "/models", json=body))

    def get_model(self, name: str) -> RegisteredModel:
        return RegisteredModel.model_validate(self._call("GET", self._m(name)))

    def search_models(
        self,
        filter: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[RegisteredModel]:
        params = {
            "filter": filter,
            "order_by": order_by,
            "max_results": max_results,
            "page_token": page_token,
        }
        return Page[RegisteredModel].model_validate(self._call("GET", "/models", params=params))

    def update_model(
        self, name: str, *, description: str | None = None, owner: str | None = None
    ) -> RegisteredModel:
        body = {"description": description, "owner": owner}
        return RegisteredModel.model_validate(self._call("PATCH", self._m(name), json=body))

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        body = {"new_name": new_name}
        return RegisteredModel.model_validate(
            self._call("POST", f"{self._m(name)}/rename", json=body)
        )

    def delete_model(self, name: str) -> None:
        self._call("DELETE", self._m(name))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call("PUT", f"{self._m(name)}/tags", json={"key": key, "value": value})

    def delete_model_tag(self, name: str, key: str) -> None:
        self._call("DELETE", f"{self._m(name)}/tags/{_q(key)}")

    def set_gate(self, name: str, gate: Gate | dict[str, Any] | None) -> RegisteredModel:
        body = {"gate": gate.model_dump() if isinstance(gate, Gate) else gate}
        return RegisteredModel.model_validate(self._call("PUT", f"{self._m(name)}/gate", json=body))

    # -- versions ------------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        model_id: str | None = None,
    ) -> ModelVersion:
        body = {
            "source": source,
            "run_id": run_id,
            "description": description,
            "tags": tags or {},
            "model_id": model_id,
        }
        return ModelVersion.model_validate(
            self._call("POST", f"{self._m(name)}/versions", json=body)
        )

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        return ModelVersion.model_validate(self._call("GET", self._v(name, version)))

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return ModelVersion.model_validate(
            self._call("GET", f"{self._m(name)}/aliases/{_q(alias)}")
        )

    def search_versions(
        self,
        filter: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        params = {
            "filter": filter,
            "order_by": order_by,
            "max_results": max_results,
            "page_token": page_token,
        }
        return Page[ModelVersion].model_validate(self._call("GET", "/versions", params=params))

    def update_version(
        self, name: str, version: int | str, *, description: str | None = None
    ) -> ModelVersion:
        return ModelVersion.model_validate(
            self._call("PATCH", self._v(name, version), json={"description": description})
        )

    def delete_version(self, name: str, version: int | str) -> None:
        self._call("DELETE", self._v(name, version))

    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        self._call("PUT", f"{self._v(name, version)}/tags", json={"key": key, "value": value})

    def delete_version_tag(self, name: str, version: int | str, key: str) -> None:
        self._call("DELETE", f"{self._v(name, version)}/tags/{_q(key)}")

    def update_card(
        self, name: str, version: int | str, sections: CardSections | dict[str, Any]
    ) -> ModelVersion:
        body = sections.model_dump() if isinstance(sections, CardSections) else dict(sections)
        return ModelVersion.model_validate(
            self._call("PATCH", f"{self._v(name, version)}/card", json=body)
        )

    def card(self, name: str, version: int | str, *, format: str = "markdown") -> str:
        body = self._call("GET", f"{self._v(name, version)}/card", params={"format": format})
        return str(body["card"])

    # -- aliases -------------------------------------------------------------------------
    def set_alias(
        self, name: str, alias: str, version: int | str, *, reason: str = ""
    ) -> AliasMove:
        body = {"version": version, "reason": reason}
        return AliasMove.model_validate(
            self._call("PUT", f"{self._m(name)}/aliases/{_q(alias)}", json=body)
        )

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        return AliasMove.model_validate(
            self._call("DELETE", f"{self._m(name)}/aliases/{_q(alias)}", params={"reason": reason})
        )

    def alias_history(
        self,
        name: str,
        alias: str | None = None,
        *,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[AliasMove]:
        params = {"alias": alias, "max_results": max_results, "page_token": page_token}
        return Page[AliasMove].model_validate(
            self._call("GET", f"{self._m(name)}/alias-history", params=params)
        )

    def rollback(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        body = {"reason": reason}
        return AliasMove.model_validate(
            self._call("POST", f"{self._m(name)}/aliases/{_q(alias)}/rollback", json=body)
        )

    # -- approvals -----------------------------------------------------------------------
    def request_promotion(
        self, name: str, version: int | str, *, alias: str = "production", reason: str
    ) -> PromotionRequest:
        body = {"name": name, "version": version, "alias": alias, "reason": reason}
        return PromotionRequest.model_validate(self._call("POST", "/requests", json=body))

    def get_request(self, request_id: str) -> PromotionRequest:
        return PromotionRequest.model_validate(self._call("GET", f"/requests/{_q(request_id)}"))

    def list_requests(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[PromotionRequest]:
        params = {
            "name": name,
            "status": status,
            "max_results": max_results,
            "page_token": page_token,
        }
        return Page[PromotionRequest].model_validate(self._call("GET", "/requests", params=params))

    def approve(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        return PromotionRequest.model_validate(
            self._call("POST", f"/requests/{_q(request_id)}/approve", json={"comment": comment})
        )

    def reject(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        return PromotionRequest.model_validate(
            self._call("POST", f"/requests/{_q(request_id)}/reject", json={"comment": comment})
        )

    def get_settings(self) -> RegistrySettings:
        return RegistrySettings.model_validate(self._call("GET", "/settings"))

    def update_settings(self, settings: RegistrySettings | dict[str, Any]) -> RegistrySettings:
        body = settings.model_dump() if isinstance(settings, RegistrySettings) else dict(settings)
        return RegistrySettings.model_validate(self._call("PUT", "/settings", json=body))

    def transition_stage(
        self, name: str, version: int | str, stage: str, *, archive_existing: bool = False
    ) -> ModelVersion:
        body = {"stage": stage, "archive_existing": archive_existing}
        return ModelVersion.model_validate(
            self._call("POST", f"{self._v(name, version)}/stage", json=body)
        )
