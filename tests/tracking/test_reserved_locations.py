"""An experiment whose location lies in a folder Strata's layers write (made before such
locations were refused at creation, or written to the database by hand): its runs' and
logged models' artifacts are refused, never written there."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput
from strata.tracking.tables import ExperimentRow


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client("", settings=Settings(home=str(tmp_path / "home"), uri=""))


def test_artifacts_of_an_experiment_placed_in_stratas_folders_are_refused(client: Client) -> None:
    t = client.tracking
    exp_id = t.create_experiment("placed").experiment_id
    with t.db.write() as s:  # type: ignore[attr-defined]
        s.execute(
            sa.update(ExperimentRow)
            .where(ExperimentRow.id == exp_id)
            .values(artifact_location="mlflow-artifacts:/Predictions/model=flights")
        )
    run_id = t.create_run(exp_id).info.run_id
    with pytest.raises(InvalidInput, match="predictions"):
        t.log_artifact_stream(run_id, "day=2026-12-03/x.parquet", io.BytesIO(b"rows"))
    model_id = t.create_logged_model(exp_id).model_id
    with pytest.raises(InvalidInput, match="predictions"):
        t.log_model_artifact_stream(model_id, "x.bin", io.BytesIO(b"x"))
    root = Path(client.settings.artifact_uri)
    assert not any(root.rglob("x.parquet")) and not any(root.rglob("x.bin"))
