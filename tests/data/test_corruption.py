"""A stored dataset part changed behind Strata's back — same size, different bytes, so no
size check can notice — is a DigestMismatch on every read path: embedded and remote, on a
local store and on S3 (moto). A changed part in a remote client's cache is never used.

Each case reads the version once first, so a verification remembered from that read must
notice the change rather than vouch for the file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from conftest import S3_BUCKET, start_server

from strata.backends.artifacts import DigestMismatch
from strata.backends.context import Backends
from strata.core.config import Settings
from strata.data.embedded import EmbeddedData

FRAME = pd.DataFrame({"id": list(range(2000)), "city": ["paris", "lyon"] * 1000})
FRAME["x"] = FRAME["id"] * 0.5


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "local":
        return Settings(home=tmp_path / "home")
    endpoint = request.getfixturevalue("s3_endpoint")
    return Settings(
        home=tmp_path / "home",
        artifact_uri=f"s3://{S3_BUCKET}/corrupt-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=endpoint,
    )


def flip_byte(data: EmbeddedData, ref: str, settings: Settings) -> None:
    """Change one byte in the middle of the version's first part, keeping its size."""
    part = data.files(ref)[0]
    if settings.artifact_uri.startswith("s3://"):
        s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
        key = settings.artifact_uri.removeprefix(f"s3://{S3_BUCKET}/") + "/" + part.path
        body = bytearray(s3.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        s3.put_object(Bucket=S3_BUCKET, Key=key, Body=bytes(body))
        return
    path = data.vfiles.location(part.path)
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        old = f.read(1)
        f.seek(size // 2)
        f.write(bytes([old[0] ^ 0xFF]))
    assert os.path.getsize(path) == size


SUITE = {"expectations": [{"expect_column_values_to_not_be_null": {"column": "id"}}]}
READS: dict[str, Callable[[Any], Any]] = {
    "read_pandas": lambda d: d.read_pandas("trips"),
    "read_arrow": lambda d: d.read_arrow("trips", columns=["id"]),
    "validate": lambda d: d.validate("trips", SUITE),
    "transform (SQL)": lambda d: d.transform(["trips"], sql="SELECT * FROM trips", output="t2"),
    "transform (Python)": lambda d: d.transform(["trips"], fn=lambda df: df, output="t3"),
    "append": lambda d: d.ingest(FRAME.head(3), "trips", mode="append"),
}


@pytest.fixture
def embedded(settings: Settings) -> Iterator[EmbeddedData]:
    backends = Backends(settings)
    yield EmbeddedData(backends)
    backends.close()


def _refusals(data: Any, reads: dict[str, Callable[[Any], Any]]) -> dict[str, str]:
    """What each read did with the changed part: only DigestMismatch is right."""
    outcome = {}
    for name, read in reads.items():
        try:
            read(data)
            outcome[name] = "read it"
        except DigestMismatch as exc:
            assert exc.details["expected"] != exc.details["actual"]
            outcome[name] = "DigestMismatch"
        except Exception as exc:
            outcome[name] = f"{type(exc).__name__}: {exc}"
    return outcome


# Reads of what was recorded at commit (the profile, and what is derived from it) do not
# open the parts: they keep answering, with the intact version's figures.
RECORDED: dict[str, Callable[[Any], Any]] = {
    "profile": lambda d: d.profile("trips@first").model_dump_json(),
    "suggest_suite": lambda d: d.suggest_suite("trips@first").model_dump_json(),
    "diff": lambda d: d.diff("other", "trips@first").model_dump_json(),
}


def _prepare(data: Any) -> dict[str, Any]:
    data.ingest(FRAME, "trips", tags=["first"])
    data.ingest(FRAME.head(10), "other")
    for read in READS.values():  # every path has read (and verified) the intact version
        if read is not READS["append"]:
            read(data)
    return {name: read(data) for name, read in RECORDED.items()}


def test_changed_part_is_refused_by_every_embedded_read(
    embedded: EmbeddedData, settings: Settings
) -> None:
    recorded = _prepare(embedded)
    versions = {n: len(embedded.list_versions(n)) for n in ("trips", "t2", "t3")}
    flip_byte(embedded, "trips", settings)
    reads = READS | {"duckdb": lambda d: d.duckdb("trips").fetchall()}
    assert _refusals(embedded, reads) == dict.fromkeys(reads, "DigestMismatch")
    assert {name: read(embedded) for name, read in RECORDED.items()} == recorded
    after = {n: len(embedded.list_versions(n)) for n in ("trips", "t2", "t3")}
    assert after == versions, "nothing derived from the changed part was published"


def test_changed_part_is_refused_through_the_server(settings: Settings, tmp_path: Path) -> None:
    for live in start_server(settings):
        server = live.embedded.data
        assert isinstance(server, EmbeddedData)
        client = live.client()
        remote = client.data
        try:
            recorded = _prepare(remote)
            cached = remote.download("trips")  # the client's verified cache
            flip_byte(server, "trips", settings)
            remote_reads = READS | {"download": lambda d: d.download("trips@first")}
            # The client's cache holds the intact part: reads it can serve from the cache
            # are right to; so clear it and every read must go to the server's copy.
            for p in cached:
                os.remove(p)
            assert _refusals(remote, remote_reads) == dict.fromkeys(remote_reads, "DigestMismatch")
            assert {name: read(remote) for name, read in RECORDED.items()} == recorded
        finally:
            client.close()


def test_changed_cached_part_is_never_used(settings: Settings, tmp_path: Path) -> None:
    for live in start_server(settings):
        client = live.client()
        remote = client.data
        remote.ingest(FRAME, "trips")
        (path,) = remote.download("trips")
        assert remote.read_pandas("trips").equals(FRAME)
        size = os.path.getsize(path)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:  # same size, other bytes
            f.seek(size // 2)
            old = f.read(1)
            f.seek(size // 2)
            f.write(bytes([old[0] ^ 0xFF]))
        assert remote.read_pandas("trips").equals(FRAME)  # fetched again, verified
        assert remote.read_arrow("trips").to_pandas().equals(FRAME)
        client.close()
