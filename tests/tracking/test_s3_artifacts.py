"""Tracking artifacts on S3 (a moto server): through `strata server`, the MLflow artifact
proxy with the unmodified mlflow client, and Strata's remote SDK.

The bytes land in the bucket (checked with boto3, with their digest sidecars), nothing
under the server's local home, and an object changed in the bucket behind the server's back
(same size, different bytes) never arrives as if it were intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import mlflow
import pytest
from conftest import S3_BUCKET, LiveServer, start_server
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking import fluent as mlflow_fluent
from mlflow.tracking._tracking_service import utils as mlflow_utils

from strata.backends.artifacts import DIGEST_PREFIX, DigestMismatch
from strata.core.config import Settings

BIG = 20 * 2**20 + 123  # several 8 MiB chunks: a multipart upload


@pytest.fixture
def s3_server(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LiveServer, str]]:
    prefix = f"trk-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        home=tmp_path / "home",
        artifact_uri=f"s3://{S3_BUCKET}/{prefix}",
        s3_endpoint_url=s3_endpoint,
    )
    for live in start_server(settings):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", live.url)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", live.admin_token)
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setattr(mlflow_utils, "_tracking_uri", mlflow_utils._tracking_uri)
        monkeypatch.setattr(mlflow_fluent, "_active_experiment_id", None)
        mlflow.set_tracking_uri(live.url)
        try:
            yield live, prefix
        finally:
            while mlflow.active_run():
                mlflow.end_run()
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


def _objects(endpoint: str, prefix: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    return {
        k.removeprefix(prefix + "/"): s3.get_object(Bucket=S3_BUCKET, Key=k)["Body"].read()
        for k in keys
    }


def test_mlflow_client_artifacts_live_in_s3(
    s3_server: tuple[LiveServer, str], s3_endpoint: str, tmp_path: Path
) -> None:
    # an earlier test's mlflow run may leave its experiment in the environment
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    server, prefix = s3_server
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(BIG))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big), artifact_path="model")
        mlflow.log_dict({"lr": 0.01}, "config/params.json")
    run_id, exp_id = run.info.run_id, run.info.experiment_id
    root = f"{exp_id}/{run_id}/artifacts"

    stored = _objects(s3_endpoint, prefix)
    assert stored[f"{root}/model/weights.bin"] == big.read_bytes()
    assert json.loads(stored[f"{root}/config/params.json"]) == {"lr": 0.01}
    sidecar = json.loads(stored[f"{DIGEST_PREFIX}/{root}/model/weights.bin.sha256"])
    assert sidecar == {"sha256": hashlib.sha256(big.read_bytes()).hexdigest(), "size": BIG}
    local_home = server.settings.home
    assert not list(local_home.rglob("weights.bin")), "nothing is kept on the server's disk"

    client = MlflowClient()
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("config", True),
        ("model", True),
    ]
    (entry,) = client.list_artifacts(run_id, "model")
    assert (entry.path, entry.file_size) == ("model/weights.bin", BIG)
    out = tmp_path / "down"
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="model/weights.bin", dst_path=str(out)
    )
    assert Path(local).read_bytes() == big.read_bytes()
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"lr": 0.01}

    # Strata's remote SDK reads the same objects, digest-checked.
    sdk = server.client()
    try:
        sdk_out = sdk.tracking.download_artifacts(run_id, "model", tmp_path / "sdk")
        assert (sdk_out / "weights.bin").read_bytes() == big.read_bytes()

        # Same size, different bytes, written straight into the bucket.
        s3 = boto3.client("s3", endpoint_url=s3_endpoint)
        tampered = bytearray(big.read_bytes())
        tampered[BIG // 2] ^= 0xFF
        s3.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/{root}/model/weights.bin", Body=tampered)
        with pytest.raises(DigestMismatch):
            sdk.tracking.download_artifacts(run_id, "model/weights.bin", tmp_path / "sdk2")
        assert not (tmp_path / "sdk2" / "model" / "weights.bin").exists()
    finally:
        sdk.close()
    with pytest.raises(MlflowException):
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model/weights.bin", dst_path=str(tmp_path / "ml2")
        )
    assert not (tmp_path / "ml2" / "model" / "weights.bin").exists()


def test_strata_sdk_artifacts_through_the_server_live_in_s3(
    s3_server: tuple[LiveServer, str], s3_endpoint: str, tmp_path: Path
) -> None:
    # an earlier test's mlflow run may leave its experiment in the environment
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    server, prefix = s3_server
    sdk = server.client()
    try:
        t = sdk.tracking
        exp = t.create_experiment("s3").experiment_id
        run = t.create_run(exp, run_name="s3-run")
        src = tmp_path / "src"
        (src / "plots").mkdir(parents=True)
        (src / "plots" / "roc.json").write_text('{"auc": 0.9}')
        (src / "notes.txt").write_text("hello")
        t.log_artifacts(run.info.run_id, src, artifact_path="out")
        stored = _objects(s3_endpoint, prefix)
        root = f"{exp}/{run.info.run_id}/artifacts/out"
        assert stored[f"{root}/plots/roc.json"] == b'{"auc": 0.9}'
        assert stored[f"{root}/notes.txt"] == b"hello"
        got = t.download_artifacts(run.info.run_id, "out", tmp_path / "back")
        assert (got / "plots" / "roc.json").read_text() == '{"auc": 0.9}'
        assert [f.path for f in t.list_artifacts(run.info.run_id, "out")] == [
            "out/notes.txt",
            "out/plots",
        ]
    finally:
        sdk.close()


def test_mlflow_client_multipart_upload_lands_in_s3(
    s3_server: tuple[LiveServer, str],
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parts are staged on the server, then written to the bucket as one object with its
    digest sidecar, as a single PUT would be; nothing stays behind on the server's disk."""
    from mlflow_multipart_helpers import CHUNK, enable_multipart

    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    server, prefix = s3_server
    parts = enable_multipart(monkeypatch)
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(3 * CHUNK + 99))
    client = MlflowClient()
    run_id = client.create_run("0").info.run_id
    client.log_artifact(run_id, str(big), "model")
    assert sorted(parts) == [1, 2, 3, 4]

    key = f"0/{run_id}/artifacts/model/weights.bin"
    stored = _objects(s3_endpoint, prefix)
    assert stored[key] == big.read_bytes()
    sidecar = json.loads(stored[f"{DIGEST_PREFIX}/{key}.sha256"])
    assert sidecar == {
        "sha256": hashlib.sha256(big.read_bytes()).hexdigest(),
        "size": big.stat().st_size,
    }
    assert not list(server.settings.home.rglob("part-*")), "the staged parts are removed"
    out = Path(client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "d")))
    assert out.read_bytes() == big.read_bytes()
