"""Experiments of the embedded tracking service (a mixin of EmbeddedTracking)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strata.backends.artifacts import STRATA_FOLDERS, strata_folder
from strata.backends.db import Database
from strata.core.clock import now_ms
from strata.core.errors import AlreadyExists, InvalidInput, NotFound
from strata.core.ids import new_id
from strata.governance.audit import audited
from strata.tracking import search
from strata.tracking.models import (
    ARTIFACT_SCHEME,
    MAX_DATASET_SEARCH_EXPERIMENTS,
    MAX_DATASET_SUMMARIES,
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    DatasetSummary,
    Experiment,
    LifecycleStage,
    Page,
    ViewType,
    proxied_store_path,
)
from strata.tracking.tables import ExperimentRow, ExperimentTagRow, InputRow, RunRow
from strata.tracking.validation import check_max_results, validate_key, view_condition


def _experiment(row: ExperimentRow, tags: dict[str, str]) -> Experiment:
    return Experiment(
        experiment_id=row.id,
        name=row.name,
        artifact_location=row.artifact_location,
        lifecycle_stage=LifecycleStage(row.lifecycle_stage),
        description=row.description,
        tags=tags,
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
    )


class ExperimentsMixin(ABC):
    """Experiment CRUD, search, tags and lifecycle on the metadata database."""

    @property
    @abstractmethod
    def db(self) -> Database:
        """The (migrated) metadata database."""

    def _exp_row(self, session: Session, experiment_id: str) -> ExperimentRow:
        row = session.get(ExperimentRow, str(experiment_id))
        if row is None:
            raise NotFound(
                f"Experiment with id {experiment_id!r} does not exist",
                details={"experiment_id": experiment_id},
            )
        return row

    def _exp_tags(self, session: Session, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {i: {} for i in ids}
        if ids:
            for r in session.scalars(
                sa.select(ExperimentTagRow).where(ExperimentTagRow.experiment_id.in_(ids))
            ):
                out[r.experiment_id][r.key] = r.value
        return out

    @staticmethod
    def _check_exp_name(name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(
                "Experiment name must be a non-empty string", details={"field": "name"}
            )
        if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
            raise InvalidInput(
                f"Experiment name is longer than {MAX_EXPERIMENT_NAME_LENGTH} characters",
                details={"field": "name"},
            )
        return name

    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Experiment:
        name = self._check_exp_name(name)
        tags = {validate_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        if artifact_location is not None:
            _check_proxied_location(artifact_location)
        if description is None and "mlflow.note.content" in tags:
            description = tags["mlflow.note.content"]
        db = self.db
        try:
            with audited(db, "experiment.create", "experiment", details={"name": name}) as sc:
                s = sc.session
                if s.scalar(sa.select(ExperimentRow.id).where(ExperimentRow.name == name)):
                    raise AlreadyExists(
                        f"Experiment {name!r} already exists (it may be deleted: restore it or "
                        "choose another name)",
                        details={"name": name},
                    )
                exp_id = new_id()
                now = now_ms()
                row = ExperimentRow(
                    id=exp_id,
                    name=name,
                    artifact_location=artifact_location or f"{ARTIFACT_SCHEME}{exp_id}",
                    lifecycle_stage="active",
                    description=description,
                    creation_time=now,
                    last_update_time=now,
                )
                s.add(row)
                s.flush()
                for k, v in tags.items():
                    s.add(ExperimentTagRow(experiment_id=exp_id, key=k, value=v))
                sc.resource_id = exp_id
                return _experiment(row, tags)
        except IntegrityError as exc:
            raise AlreadyExists(
                f"Experiment {name!r} already exists", details={"name": name}
            ) from exc

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self.db.read() as s:
            row = self._exp_row(s, experiment_id)
            return _experiment(row, self._exp_tags(s, [row.id])[row.id])

    def _resolve_experiments(self, session: Session, refs: Sequence[str]) -> list[str]:
        """The experiment ids of ``refs``, each an id or a name (an id is tried first);
        NotFound names the first that is neither. Deleted experiments count."""
        wanted = list(dict.fromkeys(str(r) for r in refs))
        if not wanted:
            return []
        # Plain SQL on the driver's cursor: the ORM query cost 0.5 ms of each search.
        cursor = session.connection().connection.cursor()

        def lookup(column: str, values: list[str]) -> list[tuple[str, str]]:
            rows: list[tuple[str, str]] = []
            for start in range(0, len(values), 500):
                chunk = values[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT {column}, id FROM trk_experiments WHERE {column} IN ({marks})"
                cursor.execute(self.db.sql(query), chunk)
                rows += cursor.fetchall()
            return rows

        found = {exp_id for exp_id, _ in lookup("id", wanted)}
        missing = [r for r in wanted if r not in found]
        names = dict(lookup("name", missing)) if missing else {}
        for ref in missing:
            if ref not in names:
                raise NotFound(
                    f"No experiment with id or name {ref!r}; list them with `strata experiments "
                    "list --view all` or search_experiments(view=ViewType.ALL)",
                    details={"experiment": ref},
                )
        return list(dict.fromkeys(r if r in found else names[r] for r in wanted))

    def get_experiment_by_name(self, name: str) -> Experiment:
        with self.db.read() as s:
            row = s.scalar(sa.select(ExperimentRow).where(ExperimentRow.name == name))
            if row is None:
                raise NotFound(
                    f"Experiment with name {name!r} does not exist", details={"name": name}
                )
            return _experiment(row, self._exp_tags(s, [row.id])[row.id])

    def search_datasets(self, experiment_ids: Sequence[str]) -> list[DatasetSummary]:
        ids = list(dict.fromkeys(str(e) for e in experiment_ids))
        if not ids:
            raise InvalidInput(
                "search_datasets needs at least one experiment id",
                details={"field": "experiment_ids"},
            )
        if len(ids) > MAX_DATASET_SEARCH_EXPERIMENTS:
            raise InvalidInput(
                f"search_datasets takes at most {MAX_DATASET_SEARCH_EXPERIMENTS} experiment "
                f"ids, got {len(ids)}",
                details={"field": "experiment_ids"},
            )
        stmt = (
            sa.select(RunRow.experiment_id, InputRow.name, InputRow.digest, InputRow.context)
            .distinct()
            .join(RunRow, RunRow.id == InputRow.run_id)
            .where(RunRow.experiment_id.in_(ids))
            .order_by(RunRow.experiment_id, InputRow.name, InputRow.digest, InputRow.context)
            .limit(MAX_DATASET_SUMMARIES)
        )
        with self.db.read() as s:
            return [
                DatasetSummary(experiment_id=e, name=n, digest=d, context=c or "")
                for e, n, d, c in s.execute(stmt).all()
            ]

    def search_experiments(
        self,
        *,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        check_max_results(max_results, 50_000)
        offset = search.decode_page_token(page_token)
        stmt = sa.select(ExperimentRow).where(*search.experiment_conditions(filter))
        stmt = stmt.where(*view_condition(ExperimentRow.lifecycle_stage, view))
        stmt = stmt.order_by(*search.experiment_order(order_by))
        with self.db.read() as s:
            rows = list(s.scalars(stmt.offset(offset).limit(max_results + 1)))
            more = len(rows) > max_results
            rows = rows[:max_results]
            tags = self._exp_tags(s, [r.id for r in rows])
            items = [_experiment(r, tags[r.id]) for r in rows]
        token = search.encode_page_token(offset + max_results) if more else None
        return Page[Experiment](items=items, next_page_token=token)

    def update_experiment(
        self, experiment_id: str, *, name: str | None = None, description: str | None = None
    ) -> Experiment:
        if name is not None:
            self._check_exp_name(name)
        try:
            with audited(
                self.db, "experiment.update", "experiment", str(experiment_id), {"name": name}
            ) as sc:
                row = self._exp_row(sc.session, experiment_id)
                if name is not None and name != row.name:
                    if sc.session.scalar(
                        sa.select(ExperimentRow.id).where(ExperimentRow.name == name)
                    ):
                        raise AlreadyExists(
                            f"Experiment {name!r} already exists", details={"name": name}
                        )
                    row.name = name
                if description is not None:
                    row.description = description
                row.last_update_time = now_ms()
                sc.session.flush()
                return _experiment(row, self._exp_tags(sc.session, [row.id])[row.id])
        except IntegrityError as exc:
            raise AlreadyExists(
                f"Experiment {name!r} already exists", details={"name": name}
            ) from exc

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        validate_key(key, "tag")
        value = str(value)
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise InvalidInput(
                f"Tag {key!r} value is longer than {MAX_TAG_VALUE_LENGTH}",
                details={"field": "value"},
            )
        with audited(
            self.db, "experiment.set_tag", "experiment", str(experiment_id), {"key": key}
        ) as sc:
            row = self._exp_row(sc.session, experiment_id)
            self.db.upsert(
                sc.session,
                ExperimentTagRow.__table__,
                [{"experiment_id": row.id, "key": key, "value": value}],
                ["experiment_id", "key"],
                ["value"],
            )
            if key == "mlflow.note.content":
                row.description = value
            row.last_update_time = now_ms()

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        with audited(
            self.db, "experiment.delete_tag", "experiment", str(experiment_id), {"key": key}
        ) as sc:
            row = self._exp_row(sc.session, experiment_id)
            deleted = sc.session.execute(
                sa.delete(ExperimentTagRow).where(
                    ExperimentTagRow.experiment_id == row.id, ExperimentTagRow.key == key
                )
            )
            if deleted.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(
                    f"Experiment {row.id!r} has no tag {key!r}",
                    details={"experiment_id": row.id, "key": key},
                )
            if key == "mlflow.note.content":
                row.description = None
            row.last_update_time = now_ms()

    def _set_exp_stage(self, experiment_id: str, stage: LifecycleStage) -> None:
        action = "experiment.delete" if stage is LifecycleStage.DELETED else "experiment.restore"
        with audited(self.db, action, "experiment", str(experiment_id)) as sc:
            # The Default experiment (id 0) may be deleted and restored too, as in MLflow;
            # runs created in it meanwhile are refused until it is restored.
            row = self._exp_row(sc.session, experiment_id)
            row.lifecycle_stage = stage.value
            row.last_update_time = now_ms()
            # As in MLflow: an experiment's runs are deleted and restored with it.
            sc.session.execute(
                sa.update(RunRow)
                .where(RunRow.experiment_id == row.id)
                .values(lifecycle_stage=stage.value)
            )

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_exp_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_exp_stage(experiment_id, LifecycleStage.ACTIVE)

    # -- runs --------------------------------------------------------------------------------


def _check_proxied_location(location: str) -> None:
    """Refuse an experiment location whose ``mlflow-artifacts:`` store path would put runs
    inside a folder Strata's own layers write (``STRATA_FOLDERS``), or climb out of the
    artifact root. Other schemes are where the client writes, never this server."""
    path = proxied_store_path(location)
    if path is None:
        return
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(
            f"artifact_location {location!r} climbs out of the artifact root ('..'): "
            "expected mlflow-artifacts:/<folder>[/<folder>...]",
            details={"field": "artifact_location"},
        )
    reserved = strata_folder(path)
    if reserved is not None:
        raise InvalidInput(
            f"artifact_location {location!r} lies under {reserved!r}, a folder Strata "
            f"itself writes ({', '.join(sorted(STRATA_FOLDERS))}): choose another folder, "
            "or leave the location out to get mlflow-artifacts:/<experiment id>",
            details={"field": "artifact_location", "reserved": reserved},
        )
