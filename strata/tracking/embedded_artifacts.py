"""Artifacts of runs and LoggedModels in the embedded tracking service (a mixin).

A run's artifacts live at its ``mlflow-artifacts:/`` URI minus the scheme, a LoggedModel's
at its artifact location minus the scheme; below that root the same rules hold for both:
relative paths (no ``..``), streamed uploads recorded with their sha256 and audited, reads
that check the digest at the end, deletes audited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy.orm import Session

from strata.backends.artifacts import ArtifactStore, strata_folder
from strata.backends.db import Database
from strata.core.errors import InvalidInput, NotFound
from strata.core.paths import safe_relpath
from strata.governance.audit import audited
from strata.tracking.models import FileInfo, proxied_store_path
from strata.tracking.tables import LoggedModelRow, RunRow

READ_CHUNK = 1024 * 1024


class _Owner:
    """A run or a model: its store root, how messages name it, and its audit resource."""

    def __init__(self, kind: str, ident: str, root: str) -> None:
        self.kind, self.ident, self.root = kind, ident, root
        self.label = f"Run {ident}" if kind == "run" else f"Logged model {ident}"
        self.key = "run_id" if kind == "run" else "model_id"

    def path(self, path: str) -> str:
        rel = safe_relpath(path) if path.strip("/") else ""
        return f"{self.root}/{rel}" if rel else self.root


class ArtifactsMixin(ABC):
    """Upload, list, open, download and delete below a run's or a model's artifact root."""

    @property
    @abstractmethod
    def db(self) -> Database: ...

    @property
    @abstractmethod
    def store(self) -> ArtifactStore: ...

    @abstractmethod
    def _run_row(self, session: Session, run_id: str) -> RunRow: ...

    @abstractmethod
    def _active_run(self, session: Session, run_id: str) -> RunRow: ...

    @abstractmethod
    def _model_row(
        self, session: Session, model_id: str, allow_deleted: bool = False
    ) -> LoggedModelRow: ...

    # -- owners ------------------------------------------------------------------------------
    def _run_owner(self, run_id: str, *, active: bool = False) -> _Owner:
        with self.db.read() as s:
            row = self._active_run(s, run_id) if active else self._run_row(s, run_id)
        root = proxied_store_path(row.artifact_uri)
        if root is None:
            raise InvalidInput(
                f"Run artifacts live at {row.artifact_uri!r}, outside Strata's artifact store; "
                "only mlflow-artifacts:/ locations are served",
                details={"artifact_uri": row.artifact_uri},
            )
        _outside_strata_folders(root, f"run {run_id!r}")
        return _Owner("run", row.id, root)

    def _model_owner(self, model_id: str) -> _Owner:
        with self.db.read() as s:
            row = self._model_row(s, model_id)
        root = proxied_store_path(row.artifact_location)
        if root is None:
            raise InvalidInput(
                f"logged model {model_id!r} keeps its artifacts at {row.artifact_location!r}, "
                "outside this server's artifact store",
                details={"model_id": model_id, "artifact_location": row.artifact_location},
            )
        _outside_strata_folders(root, f"logged model {model_id!r}")
        return _Owner("logged_model", row.id, root)

    def run_artifact_path(self, run_id: str, path: str = "") -> str:
        """The artifact-store path of ``path`` inside a run's artifacts (validated)."""
        return self._run_owner(run_id).path(path)

    # -- shared by runs and models -----------------------------------------------------------
    def _put(self, owner: _Owner, path: str, fileobj: BinaryIO) -> FileInfo:
        rel = safe_relpath(path)
        action = f"{owner.kind}.log_artifact"
        with audited(self.db, action, owner.kind, owner.ident, {"path": rel}) as scope:
            info = self.store.put_stream(f"{owner.root}/{rel}", fileobj)
            scope.details.update({"size": info.size, "sha256": info.sha256})
        return FileInfo(path=rel, is_dir=False, file_size=info.size)

    def _list(self, owner: _Owner, path: str) -> list[FileInfo]:
        prefix = owner.path(path)
        try:
            items = self.store.list(prefix)
        except NotFound:
            if prefix == owner.root:
                return []  # nothing logged yet
            raise NotFound(
                f"{owner.label} has no artifact directory {path!r}",
                details={owner.key: owner.ident, "path": path},
            ) from None
        return [
            FileInfo(
                path=item.path[len(owner.root) :].strip("/"),
                is_dir=item.is_dir,
                file_size=None if item.is_dir else item.size,
            )
            for item in items
        ]

    def _open(self, owner: _Owner, path: str, listing: str) -> tuple[FileInfo, str, BinaryIO]:
        store_path = owner.path(path)
        try:
            info = self.store.info(store_path)
        except NotFound:
            raise NotFound(
                f"{owner.label} has no artifact {path!r}",
                details={owner.key: owner.ident, "path": path},
            ) from None
        if info.is_dir:
            raise InvalidInput(
                f"Artifact {path!r} of {owner.label[0].lower()}{owner.label[1:]} is a "
                f"directory: list it with {listing} and download its files",
                details={owner.key: owner.ident, "path": path},
            )
        reader = self.store.open_read(store_path, chunk_size=READ_CHUNK)
        file = FileInfo(path=safe_relpath(path), is_dir=False, file_size=info.size)
        return file, info.sha256, cast(BinaryIO, reader)

    def _delete(self, owner: _Owner, path: str) -> None:
        rel = safe_relpath(path)
        action = f"{owner.kind}.delete_artifact"
        with audited(self.db, action, owner.kind, owner.ident, {"path": rel}):
            try:
                self.store.delete(f"{owner.root}/{rel}")
            except NotFound:
                raise NotFound(
                    f"{owner.label} has no artifact {rel!r}",
                    details={owner.key: owner.ident, "path": rel},
                ) from None

    # -- runs --------------------------------------------------------------------------------
    def log_artifact_stream(self, run_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        safe_relpath(path)
        return self._put(self._run_owner(run_id, active=True), path, fileobj)

    def list_artifacts(self, run_id: str, path: str = "") -> list[FileInfo]:
        return self._list(self._run_owner(run_id), path)

    def open_artifact(self, run_id: str, path: str) -> tuple[FileInfo, str, BinaryIO]:
        listing = f"GET /api/v1/runs/{run_id}/artifacts?path=..."
        return self._open(self._run_owner(run_id), path, listing)

    def delete_artifact(self, run_id: str, path: str) -> None:
        self._delete(self._run_owner(run_id), path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | Path = ".") -> Path:
        src = self.run_artifact_path(run_id, path)
        rel = path.strip("/")
        dst_root = Path(dst_path)
        target = dst_root / rel if rel else dst_root
        if rel and self.store.exists(src) and not self._is_dir(src):
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(src, target)
            return target
        try:
            entries = self.store.list(src)
        except NotFound:
            entries = []  # a run with no artifacts yet has no directory in the store
        if not entries and rel:
            raise NotFound(
                f"No artifact {rel!r} in run {run_id}", details={"run_id": run_id, "path": rel}
            )
        target.mkdir(parents=True, exist_ok=True)
        if entries:
            self.store.download_dir(src, target)
        return target

    def _is_dir(self, store_path: str) -> bool:
        try:
            return self.store.info(store_path).is_dir
        except NotFound:
            return False

    # -- logged models -----------------------------------------------------------------------
    def log_model_artifact_stream(self, model_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        safe_relpath(path)
        return self._put(self._model_owner(model_id), path, fileobj)

    def list_model_artifacts(self, model_id: str, path: str = "") -> list[FileInfo]:
        return self._list(self._model_owner(model_id), path)

    def open_model_artifact(self, model_id: str, path: str) -> tuple[FileInfo, str, BinaryIO]:
        listing = f"GET /api/v1/logged-models/{model_id}/artifacts?path=..."
        return self._open(self._model_owner(model_id), path, listing)

    def delete_model_artifact(self, model_id: str, path: str) -> None:
        self._delete(self._model_owner(model_id), path)


def _outside_strata_folders(root: str, owner: str) -> None:
    """Refuse artifacts whose root lies in a folder Strata's layers write (an experiment
    made before such locations were refused at creation, or through the database)."""
    reserved = strata_folder(root)
    if reserved is not None:
        raise InvalidInput(
            f"{owner} keeps its artifacts under {reserved!r}, a folder Strata itself writes: "
            "its artifacts are not served; move its experiment's runs to another experiment",
            details={"artifact_root": root, "reserved": reserved},
        )
