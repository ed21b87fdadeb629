"""The registry's interface (``client.registry``), embedded and remote alike.

Every write is audited. ``get_*`` raise NotFound naming what is missing. Lists that can
grow return ``Page[T]``: pass ``next_page_token`` back for the next page. Filters use the
MLflow grammar of :mod:`strata.tracking.search` (``name LIKE 'flights%' AND tags.team = 'x'
AND alias = 'production'``). Times are timezone-aware UTC.

Permissions (the caller's role, from the call context): editors register versions and move
aliases; a protected alias (``production``) moves only through an approved promotion
request or a rollback, which need the ``approve`` permission (approver, admin). The
requester may not approve their own request unless the admin setting
``allow_self_approval`` is on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from strata.core.page import Page
from strata.registry.models import (
    AliasMove,
    CardSections,
    Gate,
    ModelVersion,
    PromotionRequest,
    RegisteredModel,
    RegistrySettings,
)


class RegistryService(ABC):
    # -- registered models ---------------------------------------------------------------
    @abstractmethod
    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> RegisteredModel:
        """Create a registered model (owner: the caller unless given). AlreadyExists when
        the name is taken."""

    @abstractmethod
    def get_model(self, name: str) -> RegisteredModel:
        """The model with its tags, aliases and latest version number. NotFound."""

    @abstractmethod
    def search_models(
        self,
        filter: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[RegisteredModel]:
        """Models matching ``filter`` (``name``, ``tags.<key>``, ``alias``, ``owner``), by
        name ascending unless ``order_by`` (``name``, ``created_at``, ``updated_at``, each
        optionally ``ASC``/``DESC``). ``max_results`` 1..10,000."""

    @abstractmethod
    def update_model(
        self, name: str, *, description: str | None = None, owner: str | None = None
    ) -> RegisteredModel:
        """Change the description and/or owner (None leaves it)."""

    @abstractmethod
    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a model with its versions, aliases and history."""

    @abstractmethod
    def delete_model(self, name: str) -> None:
        """Delete a model and its versions (the logged models stay in their runs). A model
        holding a protected alias is refused (Conflict): roll it back or delete the alias."""

    @abstractmethod
    def set_model_tag(self, name: str, key: str, value: str) -> None: ...

    @abstractmethod
    def delete_model_tag(self, name: str, key: str) -> None:
        """NotFound when the model has no such tag."""

    @abstractmethod
    def set_gate(self, name: str, gate: Gate | dict[str, Any] | None) -> RegisteredModel:
        """Set (or with None remove) the model's promotion gate."""

    # -- versions ------------------------------------------------------------------------
    @abstractmethod
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
        """Register the model at ``source`` (``runs:/RUN_ID/PATH``, ``models:/<logged model
        id>`` or an ``mlflow-artifacts:/`` path of a run) as the model's next version,
        creating the model when missing. Copies nothing: it pins the sha256 of the model's
        ``strata-model.yaml`` (or ``MLmodel``), records the run's metrics, signature and
        lineage (input dataset versions, their sources, the git commit).

        A run without a model at the path raises NotFound naming the run and the model
        directories it does have. The version is created ``pending`` and becomes ``ready``
        once its files are checked, ``failed`` (with the reason) otherwise."""

    def register(
        self,
        name: str,
        run_id: str,
        path: str = "model",
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
    ) -> ModelVersion:
        """``create_version(name, f"runs:/{run_id}/{path}")``."""
        source = f"runs:/{run_id}/{path.strip('/')}"
        return self.create_version(name, source, run_id=run_id, description=description, tags=tags)

    @abstractmethod
    def get_version(self, name: str, version: int | str) -> ModelVersion:
        """One version; NotFound naming the model or the version."""

    @abstractmethod
    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points at; NotFound naming the alias and the model's
        aliases."""

    @abstractmethod
    def search_versions(
        self,
        filter: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        """Versions matching ``filter`` (``name``, ``version``, ``run_id``, ``status``,
        ``tags.<key>``, ``alias``), newest first unless ``order_by`` (``name``,
        ``version``, ``created_at``)."""

    @abstractmethod
    def update_version(
        self, name: str, version: int | str, *, description: str | None = None
    ) -> ModelVersion: ...

    @abstractmethod
    def delete_version(self, name: str, version: int | str) -> None:
        """Delete a version; its aliases are removed (recorded in their history). A version
        holding a protected alias is refused (Conflict)."""

    @abstractmethod
    def set_version_tag(self, name: str, version: int | str, key: str, value: str) -> None: ...

    @abstractmethod
    def delete_version_tag(self, name: str, version: int | str, key: str) -> None: ...

    @abstractmethod
    def update_card(
        self, name: str, version: int | str, sections: CardSections | dict[str, Any]
    ) -> ModelVersion:
        """Edit the owner-written card sections (``intended_use``, ``limitations``,
        ``notes``); only the model's owner or an admin. Fields left None keep their text."""

    @abstractmethod
    def card(self, name: str, version: int | str, *, format: str = "markdown") -> str:
        """The version's model card: ``markdown`` or self-contained ``html``."""

    # -- aliases -------------------------------------------------------------------------
    @abstractmethod
    def set_alias(
        self, name: str, alias: str, version: int | str, *, reason: str = ""
    ) -> AliasMove:
        """Point ``alias`` at a ready version (Conflict 409 for a pending or failed one),
        recording the move in the alias history. Protected aliases (``production``) are
        refused with PermissionDenied: use :meth:`request_promotion`. Moves of one model
        serialize: each history entry starts where the previous one ended."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        """Remove an alias (NotFound if unset); protected aliases need the approve
        permission."""

    @abstractmethod
    def alias_history(
        self,
        name: str,
        alias: str | None = None,
        *,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[AliasMove]:
        """The moves of one alias (or of all the model's aliases), newest first."""

    @abstractmethod
    def rollback(self, name: str, alias: str, *, reason: str = "") -> AliasMove:
        """Move ``alias`` back to the version it pointed at before its latest move (from
        the history). Conflict when there is no earlier version; a protected alias needs
        the approve permission."""

    # -- approvals -----------------------------------------------------------------------
    @abstractmethod
    def request_promotion(
        self, name: str, version: int | str, *, alias: str = "production", reason: str
    ) -> PromotionRequest:
        """Ask for ``alias`` to move to ``version`` (ready, or Conflict). When the model
        has a gate it runs now (candidate and current holder evaluated on the gate's
        dataset) and its result is recorded with the request."""

    @abstractmethod
    def get_request(self, request_id: str) -> PromotionRequest: ...

    @abstractmethod
    def list_requests(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[PromotionRequest]:
        """Requests, newest first, optionally of one model and/or one status."""

    @abstractmethod
    def approve(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        """Approve a pending request and move the alias (both in one transaction). Needs
        the approve permission; the requester is refused (PermissionDenied) unless
        self-approval is enabled; a failed gate is refused (Conflict) with its numbers."""

    @abstractmethod
    def reject(self, request_id: str, *, comment: str = "") -> PromotionRequest:
        """Reject a pending request (approve permission)."""

    # -- settings ------------------------------------------------------------------------
    @abstractmethod
    def get_settings(self) -> RegistrySettings: ...

    @abstractmethod
    def update_settings(self, settings: RegistrySettings | dict[str, Any]) -> RegistrySettings:
        """Admin only."""

    # -- MLflow legacy stages --------------------------------------------------------------
    @abstractmethod
    def transition_stage(
        self, name: str, version: int | str, stage: str, *, archive_existing: bool = False
    ) -> ModelVersion:
        """MLflow's stages on aliases: ``Staging``/``Production`` set the alias of that
        name (``production`` is protected as in :meth:`set_alias`), ``Archived``/``None``
        remove the version's stage aliases. ``archive_existing`` is accepted for MLflow's
        sake: an alias holds one version anyway."""
