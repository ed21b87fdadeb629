"""The embedded registry: models, versions and aliases in the metadata database, model files
left where tracking stored them (pinned by digest). Aliases and their history are in
:mod:`.aliases`, approvals in :mod:`.approvals`, tags in :mod:`.tags`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from strata.backends.context import Backends
from strata.core.clock import utcnow
from strata.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from strata.core.page import Page, encode_page_token
from strata.core.parse import parse_options
from strata.core.principal import Permission, current
from strata.data.service import DataService
from strata.governance.audit import AuditScope, audited
from strata.registry import search, sources
from strata.registry.access import page_size, page_value
from strata.registry.aliases import AliasesMixin
from strata.registry.approvals import ApprovalsMixin
from strata.registry.models import (
    PROTECTED_ALIASES,
    CardSections,
    Gate,
    Lineage,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
    check_name,
    check_tag,
    check_text,
    check_version,
)
from strata.registry.service import RegistryService
from strata.registry.tables import (
    RegAliasHistoryRow,
    RegAliasRow,
    RegModelRow,
    RegModelTagRow,
    RegRequestRow,
    RegVersionRow,
    RegVersionTagRow,
)
from strata.registry.tags import TagsMixin
from strata.tracking.service import TrackingService

T = TypeVar("T")


class EmbeddedRegistry(ApprovalsMixin, AliasesMixin, TagsMixin, RegistryService):
    def __init__(self, backends: Backends, tracking: TrackingService, data: DataService) -> None:
        self.backends = backends
        self.tracking = tracking
        self.data = data

    @property
    def db(self) -> Any:
        return self.backends.db

    @contextmanager
    def _write(
        self, action: str, resource_type: str, resource_id: str, **details: Any
    ) -> Iterator[AuditScope]:
        with audited(self.db, action, resource_type, resource_id, details) as scope:
            yield scope

    # -- loading -------------------------------------------------------------------------
    def _model_row(self, s: Session, name: str, *, lock: bool = False) -> RegModelRow:
        stmt = sa.select(RegModelRow).where(RegModelRow.name == name)
        if lock:
            stmt = stmt.with_for_update()
        row = s.scalars(stmt).first()
        if row is None:
            check_name(name)
            raise NotFound(
                f"Registered model {name!r} not found (list them with `strata models list`)",
                details={"name": name},
            )
        return row

    def _version_row(self, s: Session, name: str, version: int) -> RegVersionRow:
        row = s.get(RegVersionRow, (name, version))
        if row is None:
            self._model_row(s, name)
            raise NotFound(
                f"Model {name!r} has no version {version} (see `strata models versions {name}`)",
                details={"name": name, "version": version},
            )
        return row

    def _models(self, s: Session, rows: list[RegModelRow]) -> list[RegisteredModel]:
        names = [r.name for r in rows]
        tags: dict[str, dict[str, str]] = {n: {} for n in names}
        aliases: dict[str, dict[str, int]] = {n: {} for n in names}
        if names:
            for t in s.scalars(sa.select(RegModelTagRow).where(RegModelTagRow.name.in_(names))):
                tags[t.name][t.key] = t.value
            for a in s.scalars(sa.select(RegAliasRow).where(RegAliasRow.name.in_(names))):
                aliases[a.name][a.alias] = a.version
        return [
            RegisteredModel(
                name=r.name,
                description=r.description,
                owner=r.owner,
                tags=tags[r.name],
                aliases=dict(sorted(aliases[r.name].items())),
                latest_version=r.latest_version or None,
                gate=Gate.model_validate_json(r.gate) if r.gate else None,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]

    def _versions(self, s: Session, rows: list[RegVersionRow]) -> list[ModelVersion]:
        keys = [(r.name, r.version) for r in rows]
        tags: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
        aliases: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
        names = sorted({r.name for r in rows})
        if names:
            for t in s.scalars(sa.select(RegVersionTagRow).where(RegVersionTagRow.name.in_(names))):
                if (t.name, t.version) in tags:
                    tags[(t.name, t.version)][t.key] = t.value
            for a in s.scalars(sa.select(RegAliasRow).where(RegAliasRow.name.in_(names))):
                if (a.name, a.version) in aliases:
                    aliases[(a.name, a.version)].append(a.alias)
        return [
            ModelVersion(
                name=r.name,
                version=r.version,
                source=r.source,
                run_id=r.run_id,
                artifact_path=r.artifact_path,
                model_id=r.model_id,
                status=VersionStatus(r.status),
                status_message=r.status_message,
                format=r.format,
                flavor=r.flavor,
                digest=r.digest,
                files=json.loads(r.files or "{}"),
                signature=json.loads(r.signature) if r.signature else None,
                metrics=json.loads(r.metrics or "{}"),
                lineage=Lineage.model_validate_json(r.lineage or "{}"),
                description=r.description,
                tags=tags[(r.name, r.version)],
                aliases=sorted(aliases[(r.name, r.version)]),
                card=json.loads(r.card or "{}"),
                created_by=r.created_by,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]

    # -- registered models ---------------------------------------------------------------
    def _insert_model(
        self, s: Session, name: str, description: str, owner: str | None
    ) -> RegModelRow:
        now = utcnow()
        row = RegModelRow(
            name=name,
            description=description,
            owner=owner or current().principal.name,
            latest_version=0,
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        s.flush()
        return row

    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str | None = None,
    ) -> RegisteredModel:
        check_name(name)
        check_text(description, "description")
        pairs = [check_tag(k, v) for k, v in (tags or {}).items()]
        with self._write("registry.create_model", "registered_model", name) as scope:
            s = scope.session
            if s.get(RegModelRow, name) is not None:
                raise AlreadyExists(
                    f"Registered model {name!r} already exists", details={"name": name}
                )
            row = self._insert_model(s, name, description, owner)
            for k, v in pairs:
                s.add(RegModelTagRow(name=name, key=k, value=v))
            s.flush()
            return self._models(s, [row])[0]

    def get_model(self, name: str) -> RegisteredModel:
        with self.db.read() as s:
            return self._models(s, [self._model_row(s, name)])[0]

    def search_models(
        self,
        filter: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[RegisteredModel]:
        stmt = (
            sa.select(RegModelRow)
            .where(*search.model_conditions(filter))
            .order_by(*search.model_order(order_by))
        )
        return self._page(stmt, self._models, max_results, page_token)

    def _page(
        self,
        stmt: sa.Select[Any],
        build: Callable[[Session, list[Any]], list[T]],
        max_results: int,
        page_token: str | None,
    ) -> Page[T]:
        """One page of ``stmt``'s rows, built into models, with the next page's token."""
        limit = page_size(max_results)
        offset = page_value(page_token, "offset")
        with self.db.read() as s:
            rows = list(s.scalars(stmt.offset(offset).limit(limit + 1)))
            items = build(s, rows[:limit])
        token = encode_page_token("offset", offset + limit) if len(rows) > limit else None
        return Page(items=items, next_page_token=token)

    def update_model(
        self, name: str, *, description: str | None = None, owner: str | None = None
    ) -> RegisteredModel:
        if description is not None:
            check_text(description, "description")
        if owner is not None and (not isinstance(owner, str) or not 0 < len(owner) <= 256):
            raise InvalidInput("owner must be 1-256 characters", details={"field": "owner"})
        with self._write("registry.update_model", "registered_model", name) as scope:
            row = self._model_row(scope.session, name, lock=True)
            if description is not None:
                row.description = description
            if owner is not None:
                row.owner = owner
                scope.details["owner"] = owner
            row.updated_at = utcnow()
            scope.session.flush()
            return self._models(scope.session, [row])[0]

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        check_name(new_name, "new_name")
        with self._write("registry.rename_model", "registered_model", name) as scope:
            s = scope.session
            old = self._model_row(s, name, lock=True)
            if s.get(RegModelRow, new_name) is not None:
                raise AlreadyExists(
                    f"Registered model {new_name!r} already exists", details={"name": new_name}
                )
            scope.details["new_name"] = new_name
            now = utcnow()
            s.add(
                RegModelRow(
                    name=new_name,
                    description=old.description,
                    owner=old.owner,
                    latest_version=old.latest_version,
                    gate=old.gate,
                    created_at=old.created_at,
                    updated_at=now,
                )
            )
            s.flush()
            # Version tags reference (name, version): take them out while the versions move.
            vtags = [
                {"name": new_name, "version": t.version, "key": t.key, "value": t.value}
                for t in s.scalars(sa.select(RegVersionTagRow).where(RegVersionTagRow.name == name))
            ]
            s.execute(sa.delete(RegVersionTagRow).where(RegVersionTagRow.name == name))
            for table in (RegModelTagRow, RegVersionRow, RegAliasRow):
                s.execute(sa.update(table).where(table.name == name).values(name=new_name))
            if vtags:
                s.execute(sa.insert(RegVersionTagRow), vtags)
            for table2 in (RegAliasHistoryRow, RegRequestRow):
                s.execute(sa.update(table2).where(table2.name == name).values(name=new_name))
            s.execute(sa.delete(RegModelRow).where(RegModelRow.name == name))
            s.flush()
            return self._models(s, [self._model_row(s, new_name)])[0]

    def delete_model(self, name: str) -> None:
        with self._write("registry.delete_model", "registered_model", name) as scope:
            s = scope.session
            self._model_row(s, name, lock=True)
            held = s.scalars(
                sa.select(RegAliasRow.alias).where(
                    RegAliasRow.name == name, RegAliasRow.alias.in_(PROTECTED_ALIASES)
                )
            ).all()
            if held:
                raise Conflict(
                    f"Model {name!r} holds the protected alias {held[0]!r}: delete that alias "
                    "first (needs the approve permission)",
                    details={"name": name, "alias": held[0]},
                )
            for table in (RegVersionTagRow, RegAliasRow, RegModelTagRow, RegVersionRow):
                s.execute(sa.delete(table).where(table.name == name))
            s.execute(sa.delete(RegModelRow).where(RegModelRow.name == name))

    def set_gate(self, name: str, gate: Gate | dict[str, Any] | None) -> RegisteredModel:
        parsed: Gate | None = None
        if isinstance(gate, Gate):
            parsed = gate
        elif gate is not None:
            parsed = parse_options(Gate, None, **dict(gate))
        if parsed is not None:
            from strata.registry.gates import check_dataset

            check_dataset(self, parsed)
        with self._write("registry.set_gate", "registered_model", name) as scope:
            row = self._model_row(scope.session, name, lock=True)
            row.gate = parsed.model_dump_json() if parsed else None
            row.updated_at = utcnow()
            scope.details["gate"] = parsed.model_dump() if parsed else None
            scope.session.flush()
            return self._models(scope.session, [row])[0]

    # -- versions ------------------------------------------------------------------------
    def _lineage(
        self, run_id: str | None, dataset_versions: list[str]
    ) -> tuple[Lineage, dict[str, float]]:
        if run_id is None:
            return Lineage(dataset_versions=dataset_versions), {}
        run = self.tracking.get_run(run_id)
        datasets = [
            {
                "name": d.name,
                "digest": d.digest,
                "context": d.context or "",
                "source": d.source,
                "source_type": d.source_type,
            }
            for d in run.inputs
        ]
        lineage = Lineage(
            run_id=run_id,
            experiment_id=run.info.experiment_id,
            git_commit=run.tags.get("mlflow.source.git.commit"),
            datasets=datasets,
            dataset_versions=dataset_versions,
        )
        return lineage, dict(run.metrics)

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
        check_name(name)
        check_text(description, "description")
        if not isinstance(source, str) or not source.strip():
            raise InvalidInput("source must be a model URI", details={"field": "source"})
        pairs = [check_tag(k, v) for k, v in (tags or {}).items()]
        if model_id is not None and not source.startswith("models:/"):
            source_for_pin = f"models:/{model_id}"
        else:
            source_for_pin = source
        # Read everything first: a run without a model leaves nothing behind.
        pinned = sources.inspect(self.tracking, source_for_pin, run_id)
        lineage, metrics = self._lineage(pinned.run_id, pinned.dataset_versions)
        with self._write("registry.create_version", "model_version", name) as scope:
            s = scope.session
            model = s.scalars(
                sa.select(RegModelRow).where(RegModelRow.name == name).with_for_update()
            ).first()
            if model is None:
                model = self._insert_model(s, name, "", None)
            model.latest_version = (model.latest_version or 0) + 1
            model.updated_at = now = utcnow()
            number = model.latest_version
            row = RegVersionRow(
                name=name,
                version=number,
                source=source,
                run_id=pinned.run_id,
                artifact_path=pinned.artifact_path,
                model_id=pinned.model_id,
                status=VersionStatus.PENDING.value,
                status_message="",
                format=pinned.format,
                flavor=pinned.flavor,
                digest=pinned.digest,
                files=json.dumps(pinned.files, sort_keys=True),
                signature=json.dumps(pinned.signature) if pinned.signature else None,
                metrics=json.dumps(metrics),
                lineage=lineage.model_dump_json(),
                card="{}",
                description=description,
                created_by=current().principal.name,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            for k, v in pairs:
                s.add(RegVersionTagRow(name=name, version=number, key=k, value=v))
            scope.resource_id = f"{name}/{number}"
            scope.details.update(source=source, digest=pinned.digest)
        self._finish(name, number, pinned.problem)
        return self.get_version(name, number)

    def _finish(self, name: str, number: int, problem: str) -> None:
        """Mark a pending version ready, or failed with ``problem`` (a file its manifest
        lists is missing from the store or has another size)."""
        status = VersionStatus.FAILED if problem else VersionStatus.READY
        message = problem
        with self._write(
            "registry.finish_version", "model_version", f"{name}/{number}", status=status.value
        ) as scope:
            row = self._version_row(scope.session, name, number)
            row.status = status.value
            row.status_message = message
            row.updated_at = utcnow()

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        number = check_version(version)
        with self.db.read() as s:
            return self._versions(s, [self._version_row(s, name, number)])[0]

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        with self.db.read() as s:
            self._model_row(s, name)
            row = s.get(RegAliasRow, (name, alias))
            if row is None:
                known = s.scalars(
                    sa.select(RegAliasRow.alias).where(RegAliasRow.name == name)
                ).all()
                raise NotFound(
                    f"Model {name!r} has no alias {alias!r}"
                    + (f" (its aliases: {', '.join(sorted(known))})" if known else ""),
                    details={"name": name, "alias": alias},
                )
            return self._versions(s, [self._version_row(s, name, row.version)])[0]

    def search_versions(
        self,
        filter: str | None = None,
        *,
        order_by: list[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        stmt = (
            sa.select(RegVersionRow)
            .where(*search.version_conditions(filter))
            .order_by(*search.version_order(order_by))
        )
        return self._page(stmt, self._versions, max_results, page_token)

    def update_version(
        self, name: str, version: int | str, *, description: str | None = None
    ) -> ModelVersion:
        number = check_version(version)
        with self._write("registry.update_version", "model_version", f"{name}/{number}") as scope:
            row = self._version_row(scope.session, name, number)
            if description is not None:
                row.description = check_text(description, "description")
            row.updated_at = utcnow()
            scope.session.flush()
            return self._versions(scope.session, [row])[0]

    def delete_version(self, name: str, version: int | str) -> None:
        number = check_version(version)
        with self._write("registry.delete_version", "model_version", f"{name}/{number}") as scope:
            s = scope.session
            self._model_row(s, name, lock=True)
            self._version_row(s, name, number)
            held = s.scalars(
                sa.select(RegAliasRow).where(
                    RegAliasRow.name == name, RegAliasRow.version == number
                )
            ).all()
            for a in held:
                if a.alias in PROTECTED_ALIASES:
                    raise Conflict(
                        f"Version {number} of {name!r} holds the protected alias {a.alias!r}: "
                        "roll the alias back first",
                        details={"name": name, "version": number, "alias": a.alias},
                    )
            for a in held:
                self._record(s, name, a.alias, number, None, "delete", "version deleted", None)
                s.delete(a)
            s.execute(
                sa.delete(RegVersionTagRow).where(
                    RegVersionTagRow.name == name, RegVersionTagRow.version == number
                )
            )
            s.execute(
                sa.delete(RegVersionRow).where(
                    RegVersionRow.name == name, RegVersionRow.version == number
                )
            )

    def update_card(
        self, name: str, version: int | str, sections: CardSections | dict[str, Any]
    ) -> ModelVersion:
        number = check_version(version)
        parsed = (
            sections
            if isinstance(sections, CardSections)
            else parse_options(CardSections, None, **dict(sections))
        )
        with self._write("registry.update_card", "model_version", f"{name}/{number}") as scope:
            model = self._model_row(scope.session, name)
            principal = current().principal
            if principal.name != model.owner and not principal.can(Permission.ADMIN):
                raise PermissionDenied(
                    f"Only the owner of {name!r} ({model.owner}) or an admin may edit its "
                    f"model card; you are {principal.name!r}",
                    details={"owner": model.owner},
                )
            row = self._version_row(scope.session, name, number)
            card = json.loads(row.card or "{}")
            card.update({k: v for k, v in parsed.model_dump().items() if v is not None})
            row.card = json.dumps(card)
            row.updated_at = utcnow()
            scope.session.flush()
            return self._versions(scope.session, [row])[0]

    def card(self, name: str, version: int | str, *, format: str = "markdown") -> str:
        from strata.registry.cards import render

        if format not in ("markdown", "html"):
            raise InvalidInput(
                f"Unknown card format {format!r}; expected markdown or html",
                details={"field": "format"},
            )
        mv = self.get_version(name, version)
        return render(self, mv, self.get_model(name), format)
