"""Packaging and deployment files: the wheel, the Dockerfile and docker-compose.yml.

No Docker engine runs here, so the container files are checked as text: the compose file is
parsed (with compose's ``${VAR:-default}`` interpolation) and its wiring verified — services,
images, the settings the server really reads, ports, the bucket, the Dockerfile it builds —
but no image is built and no container starts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from strata.core.config import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_is_strata_ml_with_the_strata_package_and_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "strata", src / "strata", ignore=shutil.ignore_patterns("__pycache__"))
    build = ["wheel", "-v", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "dist")]
    done = subprocess.run(
        [sys.executable, "-m", "pip", *build, str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "deprecated" not in (done.stdout + done.stderr).lower()  # license warnings gone
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("strata_ml-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(meta).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "\nName: strata-ml\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata
    assert "Provides-Extra: demo" in metadata
    assert "strata = strata.cli.main:main" in entry
    assert "strata/__init__.py" in names and "strata/py.typed" in names
    assert any(n.startswith("strata/backends/migrations/versions/") for n in names)


def _interpolate(text: str) -> str:
    """Compose's variable syntax with an empty environment: defaults, and ``$$`` → ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        default = m.group(3)
        assert default is not None, f"{m.group(0)} has no default: compose config would fail"
        return default

    return re.sub(r"\$\$|\$\{(\w+)(:-([^}]*))?\}", sub, text)


@pytest.fixture
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text())))


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_a_slim_image_serving_strata() -> None:
    steps = _dockerfile()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and all("-slim" in f for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    for word, rest in steps:
        if word == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    assert any(w == "RUN" and "pip wheel" in r for w, r in steps)
    assert any(w == "RUN" and "pip install" in r and ".whl" in r for w, r in final)
    user = [r for w, r in final if w == "USER"]
    assert user and user[-1] not in ("root", "0")
    (cmd,) = [json.loads(r) for w, r in final if w == "CMD"]
    assert cmd[:2] == ["strata", "server"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert "--no-auth" not in cmd  # off loopback the server needs auth anyway
    port = cmd[cmd.index("--port") + 1]
    assert [r for w, r in final if w == "EXPOSE"] == [port]
    assert f"127.0.0.1:{port}/healthz" in next(r for w, r in final if w == "HEALTHCHECK")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_compose_wires_strata_to_postgres_and_minio(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    assert {"strata", "postgres", "minio", "create-bucket"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["minio"]["image"].startswith("minio/minio")
    strata = services["strata"]
    assert (ROOT / strata["build"]["context"] / strata["build"]["dockerfile"]).is_file()
    for svc in services.values():
        for dep in svc.get("depends_on", {}):
            assert dep in services
        for volume in svc.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"]

    env = {k: str(v) for k, v in strata["environment"].items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()  # the server reads exactly these settings
    db = urlsplit(settings.db_uri)
    pg = services["postgres"]["environment"]
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres" and db.port == 5432
    assert (db.username, db.password, db.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    assert settings.artifact_uri.startswith("s3://")
    bucket = urlsplit(settings.artifact_uri).hostname
    endpoint = urlsplit(settings.s3_endpoint_url)
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    minio = services["minio"]["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    make_bucket = " ".join(services["create-bucket"]["entrypoint"])
    assert "mc mb --ignore-existing" in make_bucket
    assert make_bucket.split()[-1] == f"local/{bucket}"  # the bucket the server writes to
    assert "http://minio:9000" in make_bucket and minio["MINIO_ROOT_USER"] in make_bucket

    (published,) = strata["ports"]
    host, host_port, container_port = published.split(":")
    assert host == "127.0.0.1"  # not on every interface of a laptop by default
    cmd = json.loads(next(r for w, r in _dockerfile() if w == "CMD"))
    assert container_port == cmd[cmd.index("--port") + 1] == host_port
