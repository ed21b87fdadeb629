"""Low findings of issue 7 on the server: HEAD on /healthz, the trailing-slash redirect, the
/ajax-api artifact upload cap, absolute paths in file listings."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import serve_in_thread

from strata.core.config import Settings
from strata.server.app import create_app


def test_low_findings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", max_request_bytes=1024)
    for url in serve_in_thread(create_app(settings, auth=False)):
        with httpx.Client(base_url=url) as http:
            assert http.head("/healthz").status_code == 200
            r = http.get("/api/v1/users/", headers={"host": "localhost"})
            assert r.status_code == 404 and "location" not in r.headers
            big = b"x" * 4096  # above the JSON limit: artifact routes stream, on both prefixes
            exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": "e"}).json()
            run = http.post(
                "/api/2.0/mlflow/runs/create", json={"experiment_id": exp["experiment_id"]}
            ).json()["run"]["info"]
            where = f"{exp['experiment_id']}/{run['run_id']}/artifacts/big.bin"
            for prefix in ("/api/2.0", "/ajax-api/2.0"):
                r = http.put(
                    f"{prefix}/mlflow-artifacts/artifacts/{where}",
                    content=big,
                    headers={"content-type": "application/octet-stream"},
                )
                assert r.status_code == 200, (prefix, r.status_code, r.text)
            r = http.post("/api/v1/data/datasets/f/rows", json=[{"a": 1}])
            assert r.status_code == 201
            files = http.get("/api/v1/data/versions/f/files").json()["files"]
            assert files and str(tmp_path) not in str(files)
            assert files[0]["uri"] == files[0]["path"]
