"""What a version is registered from, and how its files come back.

:func:`inspect` reads a source through the tracking service interface only (so the registry
works on any tracking backend): the run, the model directory's manifest
(``strata-model.yaml``, or ``MLmodel`` for a model the ``mlflow`` client logged) and its
listing. Nothing is copied: the sha256 of the manifest is pinned (a strata manifest lists the
sha256 and size of every file), and :func:`fetch` refuses bytes that no longer match.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.core.errors import DigestMismatch, InvalidInput, NotFound
from strata.tracking.models import FileInfo
from strata.tracking.service import TrackingService

SPEC_FILE = "strata-model.yaml"
MLMODEL = "MLmodel"
MAX_MANIFEST = 4 * 1024 * 1024
_MLFLOW_ARTIFACTS = re.compile(r"^mlflow-artifacts:/+[^/]+/([0-9a-f]{32})/artifacts/(.+)$")
_LOGGED = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")


@dataclass
class Pinned:
    """What registration records about a model directory."""

    run_id: str | None
    artifact_path: str | None
    model_id: str | None
    format: str
    digest: str
    files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    flavor: str | None = None
    signature: dict[str, Any] | None = None
    dataset_versions: list[str] = field(default_factory=list)
    #: Why the directory is not loadable (a listed file missing or resized), or "".
    problem: str = ""


def parse_source(
    source: str, run_id: str | None = None
) -> tuple[str | None, str | None, str | None]:
    """``(run_id, artifact_path, logged_model_id)`` of a source URI; InvalidInput otherwise."""
    text = source.strip()
    if text.startswith("runs:/"):
        rid, _, path = text.removeprefix("runs:/").partition("/")
        path = path.strip("/")
        if not rid or not path or ".." in path.split("/"):
            raise InvalidInput(
                f"Source {source!r} must look like runs:/RUN_ID/PATH (e.g. runs:/abc/model)",
                details={"field": "source"},
            )
        return rid, path, None
    m = _MLFLOW_ARTIFACTS.match(text)
    if m:
        path = m.group(2).strip("/")
        if ".." in path.split("/"):
            raise InvalidInput(f"Source {source!r} has '..'", details={"field": "source"})
        return m.group(1), path, None
    m = _LOGGED.match(text)
    if m:
        return run_id, None, m.group(1)
    raise InvalidInput(
        f"Unsupported model source {source!r}: expected runs:/RUN_ID/PATH, models:/<logged "
        "model id> or mlflow-artifacts:/<experiment>/<run>/artifacts/<path>",
        details={"field": "source"},
    )


def _model_dirs(tracking: TrackingService, run_id: str) -> list[str]:
    """The run's artifact directories (two levels down) holding a model manifest."""
    found: list[str] = []
    top = tracking.list_artifacts(run_id, "")
    for entry in top:
        if not entry.is_dir:
            continue
        names = {f.path.rsplit("/", 1)[-1]: f for f in tracking.list_artifacts(run_id, entry.path)}
        if SPEC_FILE in names or MLMODEL in names:
            found.append(entry.path)
        else:
            for sub in names.values():
                if sub.is_dir:
                    inner = {
                        f.path.rsplit("/", 1)[-1] for f in tracking.list_artifacts(run_id, sub.path)
                    }
                    if SPEC_FILE in inner or MLMODEL in inner:
                        found.append(sub.path)
    return found


def _read(reader: Any, what: str) -> bytes:
    with reader:
        raw: bytes = reader.read(MAX_MANIFEST + 1)
    if len(raw) > MAX_MANIFEST:
        raise InvalidInput(
            f"{what} is larger than {MAX_MANIFEST} bytes", details={"field": "source"}
        )
    return raw


def _walk(list_fn: Any, path: str) -> dict[str, FileInfo]:
    out: dict[str, FileInfo] = {}
    for entry in list_fn(path):
        if entry.is_dir:
            out.update(_walk(list_fn, entry.path))
        else:
            out[entry.path] = entry
    return out


def inspect(tracking: TrackingService, source: str, run_id: str | None = None) -> Pinned:
    """Read the manifest of the model at ``source`` and pin it.

    NotFound naming the run and its model directories when there is no model at the path.
    """
    rid, path, model_id = parse_source(source, run_id)
    if model_id is not None:
        logged = tracking.get_logged_model(model_id)
        rid = rid or logged.source_run_id

        def list_fn(p: str) -> list[FileInfo]:
            return tracking.list_model_artifacts(model_id, p)

        def open_fn(p: str) -> Any:
            return tracking.open_model_artifact(model_id, p)

        prefix = ""
    else:
        assert rid is not None and path is not None
        tracking.get_run(rid)  # NotFound naming the run
        run = rid

        def list_fn(p: str) -> list[FileInfo]:
            return tracking.list_artifacts(run, p)

        def open_fn(p: str) -> Any:
            return tracking.open_artifact(run, p)

        prefix = path + "/"
    try:
        names = {f.path.rsplit("/", 1)[-1]: f for f in list_fn(prefix.rstrip("/"))}
    except NotFound:
        names = {}
    if SPEC_FILE in names:
        fmt, manifest = "strata", SPEC_FILE
    elif MLMODEL in names:
        fmt, manifest = "mlflow", MLMODEL
    else:
        if model_id is not None:
            raise NotFound(
                f"Logged model {model_id} holds no model manifest ({SPEC_FILE} or {MLMODEL})",
                details={"model_id": model_id},
            )
        assert rid is not None
        dirs = _model_dirs(tracking, rid)
        raise NotFound(
            f"Run {rid} has no model at {path!r}; "
            + (
                f"its model directories: {', '.join(dirs)} (pass one with --path)"
                if dirs
                else "it has no logged model at all (log one with strata.log_model)"
            ),
            details={"run_id": rid, "path": path, "model_paths": dirs},
        )
    _, _, reader = open_fn(prefix + manifest)
    raw = _read(reader, f"{manifest} of {source}")
    digest = hashlib.sha256(raw).hexdigest()
    pinned = Pinned(run_id=rid, artifact_path=path, model_id=model_id, format=fmt, digest=digest)
    listing = _walk(list_fn, prefix.rstrip("/"))
    if fmt == "strata":
        from strata.models.store import parse_spec

        spec = parse_spec(raw)
        pinned.files = {SPEC_FILE: digest} | {k: v.sha256 for k, v in spec.files.items()}
        pinned.sizes = {k: v.size for k, v in spec.files.items()}
        pinned.flavor = spec.flavor
        pinned.signature = spec.signature.model_dump(mode="json") if spec.signature else None
        pinned.dataset_versions = list(spec.dataset_versions or [])
        missing = [
            name
            for name, size in pinned.sizes.items()
            if (f := listing.get(prefix + name)) is None or (f.file_size not in (None, size))
        ]
        if missing:
            pinned.problem = (
                f"the model at {source} is incomplete: {', '.join(sorted(missing))} missing or "
                "of another size than its manifest lists"
            )
    else:
        import yaml

        try:
            mlmodel = yaml.safe_load(raw) or {}
        except yaml.YAMLError:
            mlmodel = {}
        flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
        if isinstance(flavors, dict):
            pinned.flavor = next((k for k in flavors if k != "python_function"), None) or (
                "python_function" if "python_function" in flavors else None
            )
        pinned.files = {MLMODEL: digest}
        pinned.sizes = {k.removeprefix(prefix): v.file_size or 0 for k, v in listing.items()}
    return pinned


def fetch(
    tracking: TrackingService,
    *,
    run_id: str | None,
    artifact_path: str | None,
    model_id: str | None,
    digest: str | None,
    what: str,
    dst: Path | None = None,
) -> Path:
    """Download a version's model directory and check its manifest is the pinned one
    (DigestMismatch otherwise; the store checks every listed file when loading)."""
    target = dst or Path(tempfile.mkdtemp(prefix="strata-registry-"))
    if run_id is not None and artifact_path is not None:
        local = tracking.download_artifacts(run_id, artifact_path, target)
    elif model_id is not None:
        local = target / "model"
        for rel, _info in _walk(lambda p: tracking.list_model_artifacts(model_id, p), "").items():
            out = local / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            _, _, reader = tracking.open_model_artifact(model_id, rel)
            with reader, out.open("wb") as fh:
                while chunk := reader.read(1024 * 1024):
                    fh.write(chunk)
    else:
        raise NotFound(f"{what} has no stored files to load", details={"what": what})
    manifest = local / SPEC_FILE if (local / SPEC_FILE).exists() else local / MLMODEL
    if digest is not None:
        actual = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else ""
        if actual != digest:
            raise DigestMismatch(
                f"{what}: its {manifest.name} changed since registration (pinned sha256 "
                f"{digest}, found {actual or 'no file'}); register the model again",
                details={"expected": digest, "actual": actual},
            )
    return local
