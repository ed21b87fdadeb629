"""The tracking interface over HTTP (Strata's own REST API, ``/api/v1``).

Non-finite metric values travel as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
(the proto3 JSON spelling), so bodies stay valid JSON. Artifacts are streamed both ways:
uploads are sent in chunks, downloads are written to a temp file next to the destination,
hashed on the way, and renamed into place only when the sha256 the server recorded matches.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import orjson

from strata.core.errors import InvalidInput, NotFound
from strata.core.paths import safe_relpath
from strata.core.transport import HttpTransport
from strata.tracking.models import (
    DatasetInput,
    DatasetRef,
    DatasetSummary,
    Experiment,
    FileInfo,
    InputUse,
    LoggedModel,
    LoggedModelStatus,
    Metric,
    MetricPoint,
    ModelDirection,
    ModelMetric,
    ModelOrder,
    Page,
    Param,
    Run,
    RunInfo,
    RunModels,
    RunStatus,
    RunTag,
    ViewType,
)
from strata.tracking.service import TrackingService

P = "/api/v1"
UPLOAD_CHUNK = 1024 * 1024
_JSON = {"content-type": "application/json"}


def encode_float(value: float) -> float | str:
    """A float as JSON can carry it: non-finite values as ``"NaN"``/``"Infinity"``/...."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _default(obj: Any) -> Any:
    """JSON for what orjson does not know: numpy scalars become Python numbers."""
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    raise InvalidInput(
        f"cannot send a {type(obj).__name__} value to the server: use str, int or float",
        details={"type": type(obj).__name__},
    )


def _dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_default)


def _metric(m: Metric) -> dict[str, Any]:
    key, value, timestamp, step = m
    sent: object = value
    try:
        sent = encode_float(float(value))
    except (TypeError, ValueError):
        pass  # sent as is: the server names what is wrong with it
    return {"key": key, "value": sent, "timestamp": timestamp, "step": step}


def _text(value: object) -> object:
    """Param/tag values as the embedded service stores them (``str(value)``)."""
    return value if isinstance(value, str) else str(value)


def _q(segment: str) -> str:
    """Quote one path segment (ids and names may hold any character)."""
    return quote(segment, safe="")


def _qpath(path: str) -> str:
    """Quote a relative artifact path, keeping its ``/`` separators."""
    return quote(path, safe="/")


def _points(body: dict[str, Any]) -> list[MetricPoint]:
    return [
        MetricPoint(p["key"], float(p["value"]), p["timestamp"], p["step"], p.get("run_id"))
        for p in body["metrics"]
    ]


class RemoteTracking(TrackingService):
    """:class:`TrackingService` against a ``strata server``; raises the server's error classes."""

    def __init__(self, http: HttpTransport) -> None:
        self.http = http

    def _post(self, path: str, body: Any) -> Any:
        return self.http.request("POST", path, content=_dumps(body), headers=_JSON)

    # -- experiments -------------------------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Experiment:
        body = {
            "name": name,
            "artifact_location": artifact_location,
            "tags": {k: _text(v) for k, v in (tags or {}).items()},
            "description": description,
        }
        return Experiment.model_validate(self._post(f"{P}/experiments", body))

    def get_experiment(self, experiment_id: str) -> Experiment:
        body = self.http.request("GET", f"{P}/experiments/{_q(experiment_id)}")
        return Experiment.model_validate(body)

    def get_experiment_by_name(self, name: str) -> Experiment:
        body = self.http.request("GET", f"{P}/experiments/by-name", params={"name": name})
        return Experiment.model_validate(body)

    def search_experiments(
        self,
        *,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        body = self._post(
            f"{P}/experiments/search",
            {
                "filter": filter,
                "order_by": list(order_by or []),
                "view": str(view),
                "max_results": max_results,
                "page_token": page_token,
            },
        )
        items = [Experiment.model_validate(e) for e in body["experiments"]]
        return Page[Experiment](items=items, next_page_token=body.get("next_page_token"))

    def update_experiment(
        self, experiment_id: str, *, name: str | None = None, description: str | None = None
    ) -> Experiment:
        body = self.http.request(
            "PATCH",
            f"{P}/experiments/{_q(experiment_id)}",
            content=_dumps({"name": name, "description": description}),
            headers=_JSON,
        )
        return Experiment.model_validate(body)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._post(f"{P}/experiments/{_q(experiment_id)}/delete-tag", {"key": key})

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._post(f"{P}/experiments/{_q(experiment_id)}/tags", {"key": key, "value": _text(value)})

    def delete_experiment(self, experiment_id: str) -> None:
        self.http.request("DELETE", f"{P}/experiments/{_q(experiment_id)}")

    def restore_experiment(self, experiment_id: str) -> None:
        self.http.request("POST", f"{P}/experiments/{_q(experiment_id)}/restore")

    # -- runs --------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        user: str | None = None,
    ) -> Run:
        body = {
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time,
            "tags": {k: _text(v) for k, v in (tags or {}).items()},
            "parent_run_id": parent_run_id,
            "user": user,
        }
        return Run.model_validate(self._post(f"{P}/runs", body))

    def get_run(self, run_id: str) -> Run:
        return Run.model_validate(self.http.request("GET", f"{P}/runs/{_q(run_id)}"))

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        body = {
            "status": None if status is None else str(status),
            "end_time": end_time,
            "run_name": run_name,
        }
        out = self.http.request(
            "PATCH", f"{P}/runs/{_q(run_id)}", content=_dumps(body), headers=_JSON
        )
        return RunInfo.model_validate(out)

    def delete_run(self, run_id: str) -> None:
        self.http.request("DELETE", f"{P}/runs/{_q(run_id)}")

    def restore_run(self, run_id: str) -> None:
        self.http.request("POST", f"{P}/runs/{_q(run_id)}/restore")

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        body = {
            "metrics": [_metric(m) for m in metrics],
            "params": [{"key": p[0], "value": _text(p[1])} for p in params],
            "tags": [{"key": t[0], "value": _text(t[1])} for t in tags],
        }
        self._post(f"{P}/runs/{_q(run_id)}/log-batch", body)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._post(f"{P}/runs/{_q(run_id)}/delete-tag", {"key": key})

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        body = {"datasets": [d.model_dump(mode="json", by_alias=True) for d in datasets]}
        self._post(f"{P}/runs/{_q(run_id)}/log-inputs", body)

    def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None = None
    ) -> list[MetricPoint]:
        body = self.http.request(
            "GET",
            f"{P}/runs/{_q(run_id)}/metrics/history",
            params={"key": key, "max_results": max_results},
        )
        return _points(body)

    def get_metric_history_bulk(
        self, run_ids: Sequence[str], key: str, *, max_results: int = 25_000
    ) -> list[MetricPoint]:
        if not run_ids:
            return []
        body = self.http.request(
            "GET",
            f"{P}/metrics/history-bulk",
            params={"run_id": [str(r) for r in run_ids], "key": key, "max_results": max_results},
        )
        return _points(body)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | str,
        filter: str | None = None,
        *,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Page[Run]:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        body = self._post(
            f"{P}/runs/search",
            {
                "experiment_ids": ids,
                "filter": filter,
                "view": str(view),
                "max_results": max_results,
                "order_by": list(order_by or []),
                "page_token": page_token,
            },
        )
        items = [Run.model_validate(r) for r in body["runs"]]
        return Page[Run](items=items, next_page_token=body.get("next_page_token"))

    def search_datasets(self, experiment_ids: Sequence[str]) -> list[DatasetSummary]:
        body = self._post(f"{P}/experiments/search-datasets", {"experiment_ids": experiment_ids})
        return [DatasetSummary.model_validate(d) for d in body["dataset_summaries"]]

    def list_input_uses(self, datasets: Sequence[tuple[str, str]]) -> list[InputUse]:
        body = self._post(
            f"{P}/runs/input-uses",
            {"datasets": [{"name": n, "digest": d} for n, d in datasets]},
        )
        return [InputUse.model_validate(u) for u in body["uses"]]

    # -- logged models -----------------------------------------------------------------------
    def create_logged_model(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> LoggedModel:
        body = {
            "experiment_id": experiment_id,
            "name": name,
            "source_run_id": source_run_id,
            "model_type": model_type,
            "params": {k: _text(v) for k, v in (params or {}).items()},
            "tags": {k: _text(v) for k, v in (tags or {}).items()},
        }
        return LoggedModel.model_validate(self._post(f"{P}/logged-models", body))

    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        body = self.http.request(
            "GET",
            f"{P}/logged-models/{_q(model_id)}",
            params={"allow_deleted": "true"} if allow_deleted else None,
        )
        return LoggedModel.model_validate(body)

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str | None = None,
        order_by: Sequence[ModelOrder | tuple[str, bool]] = (),
        max_results: int = 100,
        page_token: str | None = None,
        datasets: Sequence[DatasetRef | tuple[str, str | None]] = (),
    ) -> Page[LoggedModel]:
        body = self._post(
            f"{P}/logged-models/search",
            {
                "experiment_ids": list(experiment_ids),
                "filter": filter,
                "order_by": [ModelOrder(*o)._asdict() for o in order_by],
                "max_results": max_results,
                "page_token": page_token,
                "datasets": [DatasetRef(*d)._asdict() for d in datasets],
            },
        )
        items = [LoggedModel.model_validate(m) for m in body["models"]]
        return Page[LoggedModel](items=items, next_page_token=body.get("next_page_token"))

    def update_logged_model(
        self,
        model_id: str,
        *,
        status: LoggedModelStatus | str,
        status_message: str | None = None,
    ) -> LoggedModel:
        body = self.http.request(
            "PATCH",
            f"{P}/logged-models/{_q(model_id)}",
            content=_dumps({"status": str(status), "status_message": status_message}),
            headers=_JSON,
        )
        return LoggedModel.model_validate(body)

    def delete_logged_model(self, model_id: str) -> None:
        self.http.request("DELETE", f"{P}/logged-models/{_q(model_id)}")

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        body = {"tags": {k: _text(v) for k, v in tags.items()}}
        self._post(f"{P}/logged-models/{_q(model_id)}/tags", body)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        self._post(f"{P}/logged-models/{_q(model_id)}/delete-tag", {"key": key})

    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        body = {"params": {k: _text(v) for k, v in params.items()}}
        self._post(f"{P}/logged-models/{_q(model_id)}/params", body)

    def log_model_metrics(self, metrics: Sequence[ModelMetric]) -> None:
        if metrics:
            sent = [m.model_dump() | {"value": encode_float(m.value)} for m in metrics]
            self._post(f"{P}/logged-models/metrics", {"metrics": sent})

    def log_run_models(
        self,
        run_id: str,
        direction: ModelDirection | str,
        models: Sequence[tuple[str, int]],
    ) -> None:
        body = {
            "direction": str(direction),
            "models": [{"model_id": m, "step": step} for m, step in models],
        }
        self._post(f"{P}/runs/{_q(run_id)}/models", body)

    def list_run_models(self, run_ids: Sequence[str]) -> dict[str, RunModels]:
        if not run_ids:
            return {}
        body = self.http.request(
            "GET", f"{P}/logged-models/run-links", params={"run_id": [str(r) for r in run_ids]}
        )
        return {r: RunModels.model_validate(v) for r, v in body["runs"].items()}

    def log_model_artifact_stream(self, model_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        return self._upload(f"logged-models/{_q(model_id)}", path, fileobj)

    def list_model_artifacts(self, model_id: str, path: str = "") -> list[FileInfo]:
        return self._list(f"logged-models/{_q(model_id)}", path)

    def open_model_artifact(self, model_id: str, path: str) -> tuple[FileInfo, str, BinaryIO]:
        return self._open(f"logged-models/{_q(model_id)}", path, f"logged model {model_id}")

    def delete_model_artifact(self, model_id: str, path: str) -> None:
        self._delete(f"logged-models/{_q(model_id)}", path)

    # -- artifacts ---------------------------------------------------------------------------
    def _upload(self, owner: str, path: str, fileobj: BinaryIO) -> FileInfo:
        def chunks() -> Iterator[bytes]:
            while chunk := fileobj.read(UPLOAD_CHUNK):
                yield bytes(chunk)

        # Checked here too: an HTTP client would resolve ``..`` in the URL before sending.
        rel = safe_relpath(path)
        body = self.http.request(
            "PUT",
            f"{P}/artifacts/{owner}/{_qpath(rel)}",
            content=chunks(),
            headers={"content-type": "application/octet-stream"},
        )
        return FileInfo.model_validate(body)

    def log_artifact_stream(self, run_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        return self._upload(f"runs/{_q(run_id)}", path, fileobj)

    def _list(self, owner: str, path: str) -> list[FileInfo]:
        body = self.http.request("GET", f"{P}/{owner}/artifacts", params={"path": path or None})
        return [FileInfo.model_validate(f) for f in body["files"]]

    def _open(self, owner: str, path: str, label: str) -> tuple[FileInfo, str, BinaryIO]:
        """Downloads the file (verified) to a private temporary file and opens it."""
        rel = safe_relpath(path)
        with tempfile.TemporaryDirectory(prefix="strata-artifact-") as tmp:
            local = Path(tmp) / "file"
            self._fetch(owner, rel, local, label)
            with local.open("rb") as fh:
                sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
            reader = local.open("rb")  # stays readable after the directory is removed (POSIX)
            info = FileInfo(path=rel, is_dir=False, file_size=local.stat().st_size)
        return info, sha256, reader

    def _fetch(self, owner: str, path: str, dest: Path, label: str) -> None:
        """Stream one file to ``dest``, renamed into place only if the digest holds."""
        self.http.download_verified(
            f"{P}/artifacts/{owner}/{_qpath(path)}",
            dest,
            what=f"artifact {path!r} of {label}",
            details={"path": path},
        )

    def _delete(self, owner: str, path: str) -> None:
        self.http.request("DELETE", f"{P}/artifacts/{owner}/{_qpath(safe_relpath(path))}")

    def list_artifacts(self, run_id: str, path: str = "") -> list[FileInfo]:
        return self._list(f"runs/{_q(run_id)}", path)

    def open_artifact(self, run_id: str, path: str) -> tuple[FileInfo, str, BinaryIO]:
        return self._open(f"runs/{_q(run_id)}", path, f"run {run_id}")

    def delete_artifact(self, run_id: str, path: str) -> None:
        self._delete(f"runs/{_q(run_id)}", path)

    def _download_file(self, run_id: str, path: str, dest: Path) -> None:
        self._fetch(f"runs/{_q(run_id)}", path, dest, f"run {run_id}")

    def _walk(self, run_id: str, path: str) -> Iterator[str]:
        for info in self.list_artifacts(run_id, path):
            if info.is_dir:
                yield from self._walk(run_id, info.path)
            else:
                yield info.path

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | Path = ".") -> Path:
        rel = safe_relpath(path) if path.strip("/") else ""
        root = Path(dst_path)
        if rel:
            parent = rel.rpartition("/")[0]
            try:
                siblings = self.list_artifacts(run_id, parent)
            except NotFound:
                siblings = []
            entry = next((f for f in siblings if f.path == rel), None)
            if entry is None:
                raise NotFound(
                    f"No artifact {rel!r} in run {run_id}",
                    details={"run_id": run_id, "path": rel},
                )
            if not entry.is_dir:
                dest = root / rel
                self._download_file(run_id, rel, dest)
                return dest
        for file in self._walk(run_id, rel):
            self._download_file(run_id, file, root / file)
        target = root / rel if rel else root
        target.mkdir(parents=True, exist_ok=True)
        return target


__all__ = ["RemoteTracking", "encode_float"]
