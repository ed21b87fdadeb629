"""Packaging and deployment files: the wheel, the Dockerfile and docker-compose.yml.

CI has no Docker engine, so here the compose file is resolved by compose itself (`config`:
schema and interpolation) and its wiring verified — services, images, the settings the server
really reads, ports, the bucket, the Dockerfile it builds — and the Dockerfile is read as text.
Building the image and running it is scripts/check-image.sh (a Docker engine needed): start,
health, non-root, auth, the mlflow client, PostgreSQL (README, Docker: its last run).
"""

from __future__ import annotations

import json
import os
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


def _compose_command() -> list[str] | None:
    """Compose itself: the v2 plugin (`docker compose`) or the standalone `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else None


@pytest.fixture
def compose() -> dict[str, Any]:
    """The compose file as compose itself resolves it (`config`: validated against the
    compose schema, variables interpolated from an environment that sets none of them)."""
    command = _compose_command()
    if command is None:
        pytest.fail(
            "docker compose (or docker-compose) is not installed: this test has compose "
            "itself resolve docker-compose.yml; install it (`apt-get install "
            "--no-install-recommends docker-compose`, as .ci/run does)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "MINIO_"))}
    done = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = dict(yaml.safe_load(done.stdout))
    # the file's own defaults, by a second reading: what compose resolved must be the same
    assert (
        resolved["services"].keys()
        == yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text()))[
            "services"
        ].keys()
    )
    return resolved


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
    froms = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], froms  # one base, build and run
    (base,) = [r for w, r in steps if w == "ARG" and r.startswith("PYTHON_IMAGE=")]
    assert base == "PYTHON_IMAGE=python:3.11-slim"
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
    if isinstance(published, dict):  # compose v2 prints the long syntax
        host, host_port, container_port = (
            published["host_ip"],
            str(published["published"]),
            str(published["target"]),
        )
    else:  # "127.0.0.1:8080:8080/tcp"
        host, host_port, container_port = published.removesuffix("/tcp").split(":")
    assert host == "127.0.0.1"  # not on every interface of a laptop by default
    cmd = json.loads(next(r for w, r in _dockerfile() if w == "CMD"))
    assert container_port == cmd[cmd.index("--port") + 1] == host_port


#: Imported by strata but not declared, on purpose: each arrives with a declared dependency
#: that guarantees it, or is an optional probe whose absence is handled where it is imported.
TRANSITIVE = {
    "starlette": "fastapi",
    "anyio": "fastapi, httpx",
    "httpcore": "httpx",
    "pydantic_core": "pydantic",
    "typing_extensions": "pydantic",
    "markupsafe": "jinja2",
    "joblib": "scikit-learn (the sklearn flavor)",
    "cloudpickle": "mlflow (only the mlflow pyfunc bridge imports it)",
    "tokenizers": "sentence-transformers",
    "IPython": "an optional probe: is this a notebook? (tracking/capture.py)",
    "pynvml": "an optional probe: GPU metrics when NVIDIA's library is there",
}


def _distribution_names(requirements: list[str]) -> set[str]:
    names = (re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0] for r in requirements)
    return {name.lower().replace("_", "-") for name in names}


def test_every_third_party_import_is_declared() -> None:
    """`pip install strata-ml` must run what it ships: a module strata imports comes from a
    declared dependency (base, or the extra that feature needs), or is listed in TRANSITIVE.

    Seen red before cryptography, scipy and markdown-it-py were declared: the image built from
    the wheel crashed at `strata server` (governance/connections.py imports cryptography)."""
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _distribution_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared |= _distribution_names(extra)
    owners = packages_distributions()
    missing: dict[str, str] = {}
    for path in sorted((ROOT / "strata").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top in sys.stdlib_module_names or top == "strata" or top in TRANSITIVE:
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, str(path.relative_to(ROOT)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
