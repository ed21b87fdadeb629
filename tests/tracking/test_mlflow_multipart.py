"""MLflow's multipart artifact uploads (``mlflow-artifacts/mpu/create|complete|abort`` and the
presigned part URLs) on ``strata server`` with authentication on: the unmodified mlflow client,
and the bad requests an attacker or a broken client would send."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from conftest import LiveServer
from mlflow.tracking import MlflowClient
from mlflow_multipart_helpers import CHUNK, enable_multipart

SQLITE_ONLY = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
MPU = "/api/2.0/mlflow-artifacts/mpu"


def _mlflow(server: LiveServer, token: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=server.url)


@SQLITE_ONLY
def test_mlflow_client_uploads_in_parts(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parts = enable_multipart(monkeypatch)
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(2 * CHUNK + 777))
    admin = _mlflow(live_server, live_server.admin_token, monkeypatch)
    run = admin.create_run("0").info.run_id

    viewer = _mlflow(live_server, live_server.token_for("viewer"), monkeypatch)
    with pytest.raises(requests.HTTPError, match="PERMISSION_DENIED"):
        viewer.log_artifact(run, str(big), "model")
    assert parts == []

    admin = _mlflow(live_server, live_server.admin_token, monkeypatch)
    admin.log_artifact(run, str(big), "model")
    assert sorted(parts) == [1, 2, 3]
    (entry,) = admin.list_artifacts(run, "model")
    assert (entry.path, entry.file_size) == ("model/weights.bin", big.stat().st_size)
    down = Path(admin.download_artifacts(run, "model/weights.bin", str(tmp_path / "down")))
    assert down.read_bytes() == big.read_bytes()
    # Strata's SDK sees the same file, with the digest recorded as for a single PUT.
    _, sha, reader = live_server.embedded.tracking.open_artifact(run, "model/weights.bin")
    reader.close()
    assert sha == hashlib.sha256(big.read_bytes()).hexdigest()
    assert not list((live_server.settings.home / "tmp").glob("upload-*")), "staging removed"


@SQLITE_ONLY
def test_bad_multipart_requests(live_server: LiveServer) -> None:
    admin = {"Authorization": f"Bearer {live_server.admin_token}"}
    http = httpx.Client(base_url=live_server.url, headers=admin, timeout=30)
    run = live_server.embedded.tracking.create_run("0")
    root = f"0/{run.info.run_id}/artifacts"

    def post(verb: str, where: str, **body: object) -> httpx.Response:
        return http.post(f"{MPU}/{verb}/{where}", json=body)

    # Not authenticated; no run owns the path; a path that climbs out; too many parts.
    assert (
        httpx.post(f"{live_server.url}{MPU}/create/{root}", json={"path": "a"}).status_code == 401
    )
    gone = post("create", "0/nope/artifacts", path="w.bin", num_parts=2)
    assert gone.status_code == 404 and "nope" in gone.json()["message"]
    assert post("create", f"{root}/%2E%2E/%2E%2E/x", path="w.bin").status_code == 400
    many = post("create", root, path="w.bin", num_parts=10_001)
    assert many.status_code == 400 and "num_parts" in many.json()["message"]
    assert (
        post("create", root, num_parts=2)
        .json()["message"]
        .startswith("Missing value for required parameter 'path'")
    )

    created = post("create", root, path="/home/me/w.bin", num_parts=2).json()
    upload_id = created["upload_id"]
    url1, url2 = (c["url"] for c in created["credentials"])
    assert url1.startswith(f"{live_server.url}/uploads/mlflow/{upload_id}/1?token=")
    # The part URL is the credential: without its token, or with another, nothing is taken.
    wrong = httpx.put(url1.split("?")[0] + "?token=guess", content=b"x")
    assert wrong.status_code == 404 and wrong.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert httpx.put(url1.split("?")[0], content=b"x").status_code == 404
    beyond = httpx.put(url1.replace(f"{upload_id}/1?", f"{upload_id}/3?"), content=b"x")
    assert beyond.status_code == 400 and "parts 1 to 2" in beyond.json()["message"]
    assert httpx.put(url1.replace(upload_id, "../../etc"), content=b"x").status_code == 404

    def complete(path: str, *etags: str) -> httpx.Response:
        parts = [{"part_number": n, "etag": etag} for n, etag in enumerate(etags, 1)]
        return post("complete", root, path=path, upload_id=upload_id, parts=parts)

    etag1 = httpx.put(url1, content=b"a" * 10).headers["ETag"].strip('"')
    assert etag1 == hashlib.sha256(b"a" * 10).hexdigest()
    missing = complete("w.bin", etag1, "x")
    assert missing.status_code == 400 and "Part 2" in missing.json()["message"]
    etag2 = httpx.put(url2, content=b"b" * 5).headers["ETag"].strip('"')
    forged = complete("w.bin", etag1, etag1)
    assert forged.status_code == 400 and "ETag" in forged.json()["message"]
    elsewhere = complete("other.bin", etag1, etag2)
    assert elsewhere.status_code == 400 and "w.bin" in elsewhere.json()["message"]
    assert post("complete", root, path="w.bin", upload_id="../x", parts=[{}]).status_code == 400
    done = complete("w.bin", etag1, etag2)
    assert done.status_code == 200, done.text
    _, _, reader = live_server.embedded.tracking.open_artifact(run.info.run_id, "w.bin")
    with reader:
        assert reader.read() == b"a" * 10 + b"b" * 5
    # Completed: its part URLs are dead; an aborted upload's too.
    assert httpx.put(url1, content=b"x").status_code == 404
    other = post("create", root, path="v.bin", num_parts=1).json()
    assert post("abort", root, path="v.bin", upload_id=other["upload_id"]).status_code == 200
    assert httpx.put(other["credentials"][0]["url"], content=b"x").status_code == 404
    assert post("abort", root, path="v.bin", upload_id=other["upload_id"]).status_code == 200
    assert not list((live_server.settings.home / "tmp").glob("upload-*"))


def _create(live_server: LiveServer, http: httpx.Client, root: str, parts: int) -> dict[str, Any]:
    r = http.post(f"{MPU}/create/{root}", json={"path": "w.bin", "num_parts": parts})
    assert r.status_code == 200, r.text
    created: dict[str, Any] = r.json()
    return created


@SQLITE_ONLY
def test_racing_puts_of_one_part_keep_their_own_bytes(live_server: LiveServer) -> None:
    """A retry racing the first try of a part: both answered, neither corrupts the other,
    and complete takes the bytes of the ETag it lists."""
    admin = {"Authorization": f"Bearer {live_server.admin_token}"}
    http = httpx.Client(base_url=live_server.url, headers=admin, timeout=60)
    run = live_server.embedded.tracking.create_run("0").info.run_id
    root = f"0/{run}/artifacts"
    created = _create(live_server, http, root, 1)
    url = created["credentials"][0]["url"]
    slow_bytes, fast_bytes = os.urandom(300_000), os.urandom(150_000)
    answers: dict[str, httpx.Response] = {}
    first_chunk_sent = threading.Event()

    def slow() -> Iterator[bytes]:
        for i in range(0, len(slow_bytes), 100_000):
            yield slow_bytes[i : i + 100_000]
            first_chunk_sent.set()
            time.sleep(0.5)

    def put_slow() -> None:
        answers["slow"] = httpx.put(url, content=slow(), timeout=60)

    worker = threading.Thread(target=put_slow)
    worker.start()
    assert first_chunk_sent.wait(30)
    time.sleep(0.3)  # the server has the slow PUT's first chunk in hand
    answers["fast"] = httpx.put(url, content=fast_bytes, timeout=60)
    worker.join(60)
    assert answers["fast"].status_code == 200, answers["fast"].text
    assert answers["slow"].status_code == 200, answers["slow"].text
    etags = {k: r.headers["ETag"].strip('"') for k, r in answers.items()}
    assert etags == {
        "slow": hashlib.sha256(slow_bytes).hexdigest(),
        "fast": hashlib.sha256(fast_bytes).hexdigest(),
    }

    def complete(etag: str) -> httpx.Response:
        parts = [{"part_number": 1, "etag": etag}]
        body = {"path": "w.bin", "upload_id": created["upload_id"], "parts": parts}
        return http.post(f"{MPU}/complete/{root}", json=body)

    # complete takes the bytes of the ETag listed: the slow PUT's, whole (its file was never
    # shared with the fast one, which wrote over its middle when they were)
    assert complete(etags["slow"]).status_code == 200
    _, sha, reader = live_server.embedded.tracking.open_artifact(run, "w.bin")
    with reader:
        assert reader.read() == slow_bytes
    assert sha == etags["slow"]
    # An ETag that names no part (a path, a made-up digest) is refused, not looked up.
    again = _create(live_server, http, root, 1)
    assert httpx.put(again["credentials"][0]["url"], content=fast_bytes).status_code == 200
    created = again
    for bad in ("../upload.json", "0" * 64):
        refused = complete(bad)
        assert refused.status_code == 400 and "never uploaded" in refused.json()["message"]
    assert complete(etags["fast"]).status_code == 200


@SQLITE_ONLY
def test_an_expired_upload_is_gone(live_server: LiveServer) -> None:
    """The 24 h TTL holds on every use of the upload, not only when another is created."""
    admin = {"Authorization": f"Bearer {live_server.admin_token}"}
    http = httpx.Client(base_url=live_server.url, headers=admin, timeout=60)
    run = live_server.embedded.tracking.create_run("0").info.run_id
    root = f"0/{run}/artifacts"
    created = _create(live_server, http, root, 1)
    url = created["credentials"][0]["url"]
    etag = httpx.put(url, content=b"part").headers["ETag"].strip('"')
    # A day and a minute pass (the upload's recorded creation time moves back).
    meta_file = live_server.settings.home / "tmp" / created["upload_id"] / "upload.json"
    meta = json.loads(meta_file.read_text())
    meta["created"] -= 24 * 3600 + 60
    meta_file.write_text(json.dumps(meta))
    late = httpx.put(url, content=b"part")
    assert late.status_code == 404 and "expired" in late.json()["message"]
    parts = [{"part_number": 1, "etag": etag}]
    body = {"path": "w.bin", "upload_id": created["upload_id"], "parts": parts}
    done = http.post(f"{MPU}/complete/{root}", json=body)
    assert done.status_code == 404 and "expired" in done.json()["message"]
