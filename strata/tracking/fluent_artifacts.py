"""Fluent artifacts and inputs: written synchronously into the active run.

``log_artifact(s)``, ``log_text``, ``log_dict`` (JSON or YAML by extension), ``log_figure``
(matplotlib), ``log_table`` (JSON in MLflow's table format, or Parquet) and ``log_input``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strata.core.errors import InvalidInput
from strata.data.service import DataService
from strata.tracking import fluent_services as _services
from strata.tracking.fluent import current_run
from strata.tracking.models import DatasetInput, FileInfo
from strata.tracking.service import TrackingService


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> FileInfo:
    """Upload a local file into the active run's artifacts under ``artifact_path``."""
    run = current_run()
    return run.tracking.log_artifact(run.run_id, local_path, artifact_path)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> list[FileInfo]:
    """Upload every file below ``local_dir`` (keeping the tree) under ``artifact_path``."""
    run = current_run()
    return run.tracking.log_artifacts(run.run_id, local_dir, artifact_path)


def _put(artifact_file: str, data: bytes) -> FileInfo:
    run = current_run()
    return run.tracking.log_artifact_stream(run.run_id, artifact_file, io.BytesIO(data))


def _ext(artifact_file: str) -> str:
    return artifact_file.rsplit(".", 1)[-1].lower() if "." in artifact_file else ""


def log_text(text: str, artifact_file: str) -> FileInfo:
    """Store ``text`` (UTF-8) as the artifact ``artifact_file``."""
    return _put(artifact_file, text.encode("utf-8"))


def log_dict(obj: Any, artifact_file: str) -> FileInfo:
    """Store ``obj`` as YAML when ``artifact_file`` ends in ``.yaml``/``.yml``, else JSON."""
    try:
        if _ext(artifact_file) in ("yaml", "yml"):
            import yaml

            text = yaml.safe_dump(obj, default_flow_style=False, sort_keys=False)
        else:
            text = json.dumps(obj, indent=2, allow_nan=True)
    except Exception as exc:  # json: TypeError/ValueError; yaml: its RepresenterError
        raise InvalidInput(
            f"log_dict cannot serialise the object for {artifact_file!r}: {exc}",
            details={"artifact_file": artifact_file},
        ) from None
    return _put(artifact_file, text.encode("utf-8"))


def log_figure(figure: Any, artifact_file: str) -> FileInfo:
    """Store a matplotlib figure; the format follows the extension (png, svg, pdf, jpg...)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidInput(
            "log_figure needs matplotlib, which is not installed: pip install matplotlib",
            details={"missing": "matplotlib"},
        ) from None
    if not hasattr(figure, "savefig"):
        raise InvalidInput(
            f"log_figure expects a matplotlib Figure, got {type(figure).__name__}",
            details={"field": "figure"},
        )
    buf = io.BytesIO()
    try:
        figure.savefig(buf, format=_ext(artifact_file) or "png")
    except ValueError as exc:
        raise InvalidInput(
            f"Cannot save figure as {artifact_file!r}: {exc}",
            details={"artifact_file": artifact_file},
        ) from None
    return _put(artifact_file, buf.getvalue())


def log_table(data: Any, artifact_file: str) -> FileInfo:
    """Store a pandas DataFrame or a dict of columns as ``.json`` (``{"columns": [...],
    "data": [[...], ...]}``, MLflow's table format) or ``.parquet``."""
    import pandas as pd

    ext = _ext(artifact_file)
    if ext not in ("json", "parquet"):
        raise InvalidInput(
            f"log_table writes .json or .parquet, got {artifact_file!r}",
            details={"artifact_file": artifact_file},
        )
    try:
        df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(dict(data))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"log_table expects a DataFrame or a dict of equal-length columns: {exc}",
            details={"artifact_file": artifact_file},
        ) from None
    if ext == "json":
        payload = df.to_json(orient="split", index=False, date_format="iso")
        body = json.dumps({k: v for k, v in json.loads(payload).items() if k != "index"})
        return _put(artifact_file, body.encode("utf-8"))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return _put(artifact_file, buf.getvalue())


def log_input(
    dataset_name: str,
    digest: str | None = None,
    source: str = "",
    context: str | None = "train",
    *,
    source_type: str = "",
    schema: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> DatasetInput:
    """Record a dataset the active run used (idempotent per name + digest + context).

    Without ``digest``, ``dataset_name`` is a reference into Strata's data layer (``NAME``,
    ``NAME@VERSION``, ``NAME@latest``, ``NAME@TAG``): it is resolved now, and the run records
    that exact version (name, version digest, ``strata:NAME@VERSION`` as the source, its
    schema) — so the run traces back to the data it was trained on. Raises NotFound for an
    unknown dataset or version.
    """
    run = current_run()
    if digest is None:
        version = _data_service(run.tracking).get_version(dataset_name)
        dataset_name, digest = version.dataset, version.digest
        source = source or f"strata:{version.ref}"
        source_type = source_type or "strata"
        if schema is None:
            schema = json.dumps(
                {"columns": [{"name": c.name, "type": c.type} for c in version.columns]}
            )
    item = DatasetInput(
        name=dataset_name,
        digest=digest,
        source=source,
        source_type=source_type,
        schema=schema,
        context=context,
        tags=dict(tags or {}),
    )
    run.tracking.log_inputs(run.run_id, [item])
    return item


def _data_service(tracking: TrackingService) -> DataService:
    """The data service of the Client the tracking service belongs to (same store, or same
    server)."""
    data = _services.data_beside(tracking)
    if data is not None:
        return data
    raise InvalidInput(
        "log_input without a digest resolves a Strata dataset reference, which needs the run "
        "to log through Strata's own tracking service; pass digest= for other datasets",
        details={"field": "digest"},
    )
