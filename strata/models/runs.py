"""The models a run logged, read through the tracking service interface.

``run_models`` works the same on an embedded and a remote tracking service (it uses only
``get_run``, ``search_logged_models`` and ``open_artifact``), so the SDK, the REST route
``GET /api/v1/models/runs/{run_id}`` and the UI's run page share it.
"""

from __future__ import annotations

from strata.core.errors import StrataError
from strata.models.models import SPEC_FILE, RunModel
from strata.models.store import parse_spec
from strata.tracking.service import TrackingService

MAX_SPEC_BYTES = 1 << 20
"""A strata-model.yaml larger than this is not read (a real one is a few KiB)."""


def run_models(tracking: TrackingService, run_id: str) -> list[RunModel]:
    """Every Strata model the run logged (its MLflow LoggedModels tagged with a
    ``runs:/<run_id>/...`` URI), ordered by artifact path, each with its parsed spec.

    NotFound when the run does not exist. A model whose yaml cannot be read is listed with
    ``error`` set rather than failing the whole list.
    """
    found = [_with_spec(tracking, run_id, entry) for entry in logged_models(tracking, run_id)]
    return sorted(found, key=lambda m: (m.artifact_path, m.model_id))


def logged_models(tracking: TrackingService, run_id: str) -> list[RunModel]:
    """The run's LoggedModels that are Strata models (tagged with a ``runs:/<run_id>/...``
    URI), without their specs. NotFound when the run does not exist."""
    run = tracking.get_run(run_id)
    prefix = f"runs:/{run.info.run_id}/"
    found: list[RunModel] = []
    token: str | None = None
    while True:
        page = tracking.search_logged_models(
            [run.info.experiment_id],
            filter=f"source_run_id = '{run.info.run_id}'",
            max_results=1000,
            page_token=token,
        )
        for logged in page.items:
            uri = logged.tags.get("strata.model.uri", "")
            if not uri.startswith(prefix):
                continue
            found.append(
                RunModel(
                    model_id=logged.model_id,
                    name=logged.name,
                    artifact_path=uri[len(prefix) :].strip("/"),
                    model_uri=uri,
                    status=str(logged.status),
                )
            )
        token = page.next_page_token
        if not token:
            break
    return found


def _with_spec(tracking: TrackingService, run_id: str, entry: RunModel) -> RunModel:
    try:
        info, _digest, reader = tracking.open_artifact(run_id, f"{entry.artifact_path}/{SPEC_FILE}")
        with reader:
            if (info.file_size or 0) > MAX_SPEC_BYTES:
                return entry.model_copy(
                    update={"error": f"{SPEC_FILE} is {info.file_size} bytes; not read"}
                )
            raw = reader.read()  # to the end: the store checks the digest there
        return entry.model_copy(update={"spec": parse_spec(raw)})
    except StrataError as exc:
        return entry.model_copy(update={"error": exc.message})
