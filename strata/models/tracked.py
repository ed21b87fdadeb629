"""Models and runs: ``log_model`` inside a run, and URIs ``load`` resolves.

``log_model`` saves the model locally (atomically, like ``save``), uploads the directory to
the run's artifacts at ``artifact_path`` through the tracking service interface (embedded or
remote alike; each file's digest is recorded by the artifact store), and records an MLflow 3
LoggedModel pointing at it, whose own artifact root gets the same files — so
``mlflow.search_logged_models`` lists it and ``mlflow`` can download it.

URIs: a path, ``runs:/RUN_ID/PATH`` (downloaded from the run's artifacts, then verified like
any directory) and any scheme registered with :func:`register_resolver` — the registry adds
``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` that way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from strata.core.errors import InvalidInput
from strata.models.model import Model
from strata.models.models import ModelSpec, Signature
from strata.models.store import load as load_path
from strata.models.store import save
from strata.tracking.models import LoggedModelStatus
from strata.tracking.service import TrackingService

Resolver = Callable[[str, TrackingService | None], Path]
"""Turns a URI into a local model directory (downloading it when needed)."""

_resolvers: dict[str, Resolver] = {}
#: Schemes resolved by a layer above this one, whose module (imported on first use) holds
#: ``resolve_uri``; a resolver registered for the scheme takes precedence (``models:/`` is
#: the registry's).
_PLUGINS = {"models": "strata.registry.uris"}


class ModelInfo(BaseModel):
    """What ``log_model`` recorded: the URI to load it by, the LoggedModel's id, the spec."""

    model_uri: str
    run_id: str
    artifact_path: str
    model_id: str
    spec: ModelSpec


def register_resolver(scheme: str, resolver: Resolver) -> None:
    """Make ``load("<scheme>:/...")`` resolve through ``resolver`` (one per scheme)."""
    _resolvers[scheme] = resolver


def _runs(uri: str, tracking: TrackingService | None) -> Path:
    rest = uri.removeprefix("runs:/")
    run_id, _, path = rest.partition("/")
    if not run_id or not path.strip("/"):
        raise InvalidInput(
            f"Model URI {uri!r} must look like runs:/RUN_ID/PATH (e.g. runs:/abc123/model)",
            details={"field": "uri"},
        )
    if tracking is None:
        from strata.tracking.fluent_services import default_tracking

        tracking = default_tracking()
    from strata.core.config import load_settings
    from strata.core.staging import make_workdir

    work = make_workdir(load_settings().home / "tmp", "model-")
    try:
        local = tracking.download_artifacts(run_id, path.strip("/"), work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    with _owned_lock:
        _owned[local] = work
    return local


_owned: dict[Path, str] = {}
"""Directories ``_runs`` downloaded, by the path it returned: the work directory to remove."""
_owned_lock = threading.Lock()


def release(path: Path) -> None:
    """Remove ``path``'s download directory if a ``runs:/`` resolve made it (else nothing)."""
    with _owned_lock:
        work = _owned.pop(path, None)
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)


register_resolver("runs", _runs)


def resolve(uri: str | os.PathLike[str], tracking: TrackingService | None = None) -> Path:
    """The local directory of the model at ``uri``."""
    text = os.fspath(uri)
    scheme, sep, _ = text.partition(":/")
    if sep and len(scheme) > 1 and "/" not in scheme:  # not a Windows drive letter
        resolver = _resolvers.get(scheme)
        if resolver is None and scheme in _PLUGINS:
            import importlib

            resolver = importlib.import_module(_PLUGINS[scheme]).resolve_uri
        if resolver is None:
            raise InvalidInput(
                f"Unknown model URI scheme {scheme!r} in {text!r}; known: a path, "
                f"{', '.join(f'{s}:/' for s in sorted(_resolvers))}",
                details={"field": "uri"},
            )
        return resolver(text, tracking)
    return Path(text)


def load(
    uri: str | os.PathLike[str],
    *,
    trusted: bool = False,
    tracking: TrackingService | None = None,
) -> Model:
    """The model at ``uri`` (a path, ``runs:/RUN_ID/PATH`` or a registered scheme), every
    file verified against its digest first; see :func:`strata.models.store.load`.

    A ``runs:/`` model is downloaded into ``$STRATA_HOME/tmp/model-*``, removed when the
    returned model is garbage-collected (or the process exits; ``strata gc`` and the next
    download sweep the ones of killed processes); at once when loading fails or the digest
    cache already holds the same model."""
    path = resolve(uri, tracking)
    try:
        model = load_path(path, trusted=trusted)
    except BaseException:
        release(path)
        raise
    with _owned_lock:
        work = _owned.pop(path, None)
    if work is not None:
        if model.path == path:  # the ONNX session and python_function artifacts read it later
            weakref.finalize(model, shutil.rmtree, work, True)
        else:
            shutil.rmtree(work, ignore_errors=True)  # a cached model from an earlier download
    return model


def log_model(
    obj: Any,
    artifact_path: str = "model",
    *,
    input_example: Any = None,
    signature: Signature | None = None,
    trusted: bool = False,
    serialization: str | None = None,
    dataset_versions: Sequence[str] = (),
) -> ModelInfo:
    """Save ``obj`` into the active run's artifacts at ``artifact_path`` (a run is started if
    none is) and record it as an MLflow 3 LoggedModel of the run. Returns the ``runs:/``
    URI to load it by. Errors as ``save``; nothing is uploaded when the save fails."""
    from strata.tracking.fluent import current_run, flush

    path = artifact_path.strip("/")
    if not path or ".." in path.split("/"):
        raise InvalidInput(
            f"artifact_path {artifact_path!r} must be a relative path without '..'",
            details={"field": "artifact_path"},
        )
    run = current_run()
    flush()
    tracking = run.tracking
    work = Path(tempfile.mkdtemp(prefix="strata-log-model-"))
    try:
        spec = save(
            obj,
            work / "model",
            input_example=input_example,
            signature=signature,
            trusted=trusted,
            serialization=serialization,
            run_id=run.run_id,
            dataset_versions=dataset_versions,
        )
        tracking.log_artifacts(run.run_id, work / "model", path)
        uri = f"runs:/{run.run_id}/{path}"
        logged = tracking.create_logged_model(
            run.experiment_id,
            name=path.replace("/", "-"),
            source_run_id=run.run_id,
            model_type=spec.flavor,
            tags={"strata.model.uri": uri, "strata.model.format": str(spec.format_version)},
        )
        try:
            for file in sorted(p for p in (work / "model").rglob("*") if p.is_file()):
                with file.open("rb") as fh:
                    rel = file.relative_to(work / "model").as_posix()
                    tracking.log_model_artifact_stream(logged.model_id, rel, fh)
        except Exception as exc:
            tracking.update_logged_model(
                logged.model_id, status=LoggedModelStatus.UPLOAD_FAILED, status_message=str(exc)
            )
            raise
        tracking.update_logged_model(logged.model_id, status=LoggedModelStatus.READY)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ModelInfo(
        model_uri=uri, run_id=run.run_id, artifact_path=path, model_id=logged.model_id, spec=spec
    )
