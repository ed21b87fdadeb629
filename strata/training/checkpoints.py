"""Checkpoints of a job's PyTorch fits, kept as artifacts of its run, and finding the run a
killed job left behind so that running the same job again continues it.

A fit's checkpoint is the one artifact ``checkpoints/<fit>.pt`` (``fit`` = ``fold0`` ...
for CV folds, ``final`` for the last fit), replaced whole every N steps through the tracking
service interface (``log_artifact_stream``: a temp name then a rename locally, a completed
multipart upload on S3), so a kill leaves the previous checkpoint or the new one, never half
of one, and it works embedded and remote alike. Per-epoch losses are the run's metrics
``<fit>_train_loss`` / ``<fit>_val_loss`` (step = epoch).

A job that checkpoints tags its run with a fingerprint of its config and input version and
with its owner (host, PID, process start time). Running the same job again finds a RUNNING
run with that fingerprint in the experiment whose owner is gone (the PID is free or belongs to
a newer process; another host's run only when ``resume`` names it) and continues it.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from strata.core import faults
from strata.core.errors import NotFound
from strata.tracking.service import TrackingService

TAG_FINGERPRINT = "strata.training.fingerprint"
TAG_OWNER = "strata.training.owner"
TAG_RESUMED = "strata.training.resumed"
TAG_RESUMED_STEP = "strata.training.resumed_from_step"
PREFIX = "checkpoints"


class RunCheckpoints:
    """A :class:`strata.training.torch_loop.Checkpointer` for one fit of a run."""

    def __init__(self, tracking: TrackingService, run_id: str, fit: str) -> None:
        self.tracking = tracking
        self.run_id = run_id
        self.fit = fit
        self.path = f"{PREFIX}/{fit}.pt"
        self.saved: list[int] = []

    def load(self) -> bytes | None:
        try:
            _, _, reader = self.tracking.open_artifact(self.run_id, self.path)
        except NotFound:
            return None
        with reader:
            return reader.read()

    def save(self, data: bytes, step: int) -> None:
        from strata.tracking import fluent

        fluent.flush()  # the losses logged so far are durable before the checkpoint is
        self.tracking.log_artifact_stream(self.run_id, self.path, io.BytesIO(data))
        self.saved.append(step)
        faults.point("training.checkpoint")

    def log(self, metrics: dict[str, float], step: int) -> None:
        from strata.tracking import fluent

        fluent.log_metrics({f"{self.fit}_{k}": v for k, v in metrics.items()}, step=step)


def fingerprint(config_json: str, data_ref: str) -> str:
    return hashlib.sha256(f"{config_json}\n{data_ref}".encode()).hexdigest()[:32]


def owner() -> str:
    from strata.core.staging import process_owner

    return json.dumps(process_owner())


def owner_gone(value: str | None) -> bool:
    from strata.core import staging

    try:
        doc: Any = json.loads(value or "")
    except ValueError:
        return False
    return staging.owner_gone(doc)


def resumable_run(tracking: TrackingService, experiment: str, fp: str) -> str | None:
    """The newest RUNNING run of ``experiment`` with fingerprint ``fp`` whose process on this
    host is gone and that holds a checkpoint; None when there is none."""
    try:
        exp = tracking.get_experiment_by_name(experiment)
    except NotFound:
        return None
    runs = tracking.search_runs(
        [exp.experiment_id],
        f"tags.`{TAG_FINGERPRINT}` = '{fp}' and attributes.status = 'RUNNING'",
        max_results=20,
    )
    for run in runs:
        if not owner_gone(run.tags.get(TAG_OWNER)):
            continue
        try:
            if tracking.list_artifacts(run.info.run_id, PREFIX):
                return str(run.info.run_id)
        except NotFound:
            continue
    return None
