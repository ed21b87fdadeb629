"""`strata deploy build`: the manifests load into the official kubernetes client's typed
models (and survive the round trip unchanged, so no key was misspelled or dropped), the
Dockerfile is made of valid instructions over files that exist in the context, the copied
model loads and predicts like the registered one, and hostile refs, names and output
directories change nothing outside --out."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from registry_helpers import exactly
from scoring_helpers import FEATURES, flights, register_flights_model
from typer.testing import CliRunner

import strata.models as sm
from strata.cli.main import app
from strata.client import Client
from strata.core.errors import AlreadyExists, InvalidInput, NotFound
from strata.serving.deploy import BOOTSTRAP, BOOTSTRAP_PATH, build, dns_label

KINDS = {
    "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
}
DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    from strata.core.config import Settings

    home = tmp_path_factory.mktemp("deploy-home")
    c = Client(settings=Settings(home=home))
    register_flights_model(c, "flights-delay")
    c.registry.set_alias("flights-delay", "staging", 1)
    yield c
    c.close()


def typed(doc: dict[str, Any]) -> Any:
    """``doc`` as the kubernetes client's model for its kind (required fields checked by
    the models' client-side validation), after checking the round trip loses nothing."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    obj = api.deserialize(json.dumps(doc), KINDS[doc["kind"]], "application/json")
    assert api.sanitize_for_serialization(obj) == doc  # an unknown key would be dropped
    return obj


def load_manifests(out: Path) -> dict[str, Any]:
    objs = {}
    for path in sorted((out / "k8s").glob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert len(docs) == 1
        objs[docs[0]["kind"]] = typed(docs[0])
    assert set(objs) == set(KINDS)
    return objs


def docker_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined;
    fails on an unknown instruction or a malformed exec-form array."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full, pending = pending + line, ""
        word, _, args = full.partition(" ")
        assert word in DOCKER_INSTRUCTIONS, f"unknown instruction {word!r}"
        out.append((word, args.strip()))
    assert not pending, "a continuation runs off the end"
    assert out[0][0] == "FROM"
    for word, args in out:
        if word == "CMD" or (word == "HEALTHCHECK" and " CMD " in f" {args}"):
            form = args if word == "CMD" else args.split(" CMD ", 1)[1]
            cmd = json.loads(form)
            assert isinstance(cmd, list) and all(isinstance(a, str) for a in cmd)
    return out


def test_build_writes_a_context_and_valid_manifests(client: Client, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = build("flights-delay@staging", out, client=client, replicas=3, max_replicas=7)
    assert result.app == "strata-flights-delay" and result.image == "strata-flights-delay:1"
    assert result.model["version"] == "1" and result.model["alias"] == "staging"
    objs = load_manifests(out)
    cm, dep, svc, hpa = (objs[k] for k in KINDS)
    container = dep.spec.template.spec.containers[0]
    assert container.liveness_probe.http_get.path == "/v2/health/live"
    assert container.readiness_probe.http_get.path == "/v2/health/ready"
    assert container.liveness_probe.http_get.port == "http" == container.ports[0].name
    assert container.ports[0].container_port == 8080
    security = container.security_context
    assert security.run_as_non_root and security.read_only_root_filesystem
    # the bootstrap's settings all come from the ConfigMap the container reads
    assert container.env_from[0].config_map_ref.name == cm.metadata.name
    assert container.args == ["python", BOOTSTRAP_PATH]
    read = set(re.findall(r'env(?:\.get\(|\[)"(STRATA_\w+)"', BOOTSTRAP))
    optional = {"STRATA_ADMIN_TOKEN", "STRATA_BOOTSTRAP_PRINT", "STRATA_SERVE_HOST"}
    assert len(read) > 5 and read - optional <= set(cm.data)
    assert cm.data["STRATA_MODEL_REF"] == ""  # the copied model is served
    assert cm.data["STRATA_MODEL_DIGEST"] == result.model["digest"]
    assert cm.data["STRATA_SERVE_NAME"] == "flights-delay"
    # the Secret is optional and named after the app; nothing secret is in the ConfigMap
    assert container.env_from[1].secret_ref.name == "strata-flights-delay-auth"
    assert container.env_from[1].secret_ref.optional is True
    assert not any("TOKEN" in k for k in cm.data)
    pod_labels = dep.spec.template.metadata.labels
    assert all(pod_labels[k] == v for k, v in svc.spec.selector.items())
    assert all(pod_labels[k] == v for k, v in dep.spec.selector.match_labels.items())
    assert svc.spec.ports[0].target_port == "http"
    target = hpa.spec.scale_target_ref
    assert target.name == dep.metadata.name and target.kind == "Deployment"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 7)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 70

    steps = docker_instructions((out / "Dockerfile").read_text())
    words = [w for w, _ in steps]
    assert words.count("FROM") == 1 and "USER" in words and words[-1] == "CMD"
    for word, args in steps:
        if word == "COPY":
            source = next(a for a in args.split() if not a.startswith("--"))
            assert (out / source).exists(), f"COPY {source}: not in the build context"
    assert json.loads(dict(steps)["CMD"]) == ["python", BOOTSTRAP_PATH]
    # LightGBM loads the system's libgomp, which python:*-slim lacks: installed before pip
    runs = [args for word, args in steps if word == "RUN"]
    gomp = next(i for i, a in enumerate(runs) if "install -y --no-install-recommends libgomp1" in a)
    assert gomp < next(i for i, a in enumerate(runs) if "pip install" in a)
    assert (out / "bootstrap.py").read_text() == BOOTSTRAP
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert reqs[1].startswith("strata-ml[models]==")
    assert any(r.startswith("lightgbm==") for r in reqs)
    assert [r for r in reqs if r.startswith("strata")] == [reqs[1]]  # one strata-ml line

    # the copied model is the registered one, every digest verified on load
    frame = flights(200, seed=9)
    copied = sm.load(out / "model")
    registered = sm.load("models:/flights-delay/1", tracking=client.tracking)
    assert np.array_equal(copied.predict(frame[FEATURES]), registered.predict(frame[FEATURES]))
    assert sorted(result.files) == sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
    )


def test_fetch_mode_serves_the_alias_from_a_server(client: Client, tmp_path: Path) -> None:
    out = tmp_path / "fetch"
    build(
        "flights-delay@staging",
        out,
        client=client,
        fetch=True,
        server_uri="https://strata.example.com",
        namespace="ml",
        image="registry.example.com/ml/flights:1",
    )
    assert not (out / "model").exists()
    objs = load_manifests(out)
    cm, dep = objs["ConfigMap"], objs["Deployment"]
    assert cm.data["STRATA_MODEL_REF"] == "flights-delay@staging"  # follows the alias
    assert cm.data["STRATA_URI"] == "https://strata.example.com"
    assert all(o.metadata.namespace == "ml" for o in objs.values())
    assert dep.spec.template.spec.containers[0].image == "registry.example.com/ml/flights:1"
    assert "COPY --chown" not in (out / "Dockerfile").read_text()


def test_hostile_refs_and_names_stay_inside_out(client: Client, tmp_path: Path) -> None:
    before = set(os.listdir(tmp_path))
    for ref in (
        "../../etc/passwd",
        "flights-delay/../../x",
        "flights-delay@staging\n- kind: Secret",
        "flights-delay@Staging: {x: 1}",
        "models:/../x",
        "runs:/abc/../../model",
        "s3://bucket/model",
    ):
        exactly(InvalidInput, build, ref, tmp_path / "out", client=client)
    exactly(NotFound, build, "no-such-model@staging", tmp_path / "out", client=client)
    assert set(os.listdir(tmp_path)) == before  # nothing written, no temp dir left

    # a registered name that is no DNS label, and a directory whose name is YAML-ish
    register_flights_model(client, "Flights_Delay.V2", rows=500)
    result = build("Flights_Delay.V2/1", tmp_path / "odd", client=client)
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", result.app)
    assert result.app != dns_label("flights-delay-v2")  # the digest keeps them distinct
    load_manifests(tmp_path / "odd")
    weird = tmp_path / "m: {a: 1} #\"'&*"
    sm.save(_fitted(), weird, input_example=flights(5)[FEATURES])
    out = tmp_path / "weird-out"
    build(str(weird), out, client=client)
    objs = load_manifests(out)
    dep = objs["Deployment"]
    assert dep.metadata.annotations["strata.dev/model-ref"] == str(weird)
    assert set(dep.metadata.annotations) == {
        "strata.dev/model-ref", "strata.dev/model-uri", "strata.dev/model-digest"
    }  # fmt: skip
    for line in (out / "Dockerfile").read_text().splitlines():
        assert not line.startswith(("a:", "m:"))
    docker_instructions((out / "Dockerfile").read_text())


def _fitted() -> Any:
    import lightgbm as lgb

    f = flights(300)
    return lgb.LGBMClassifier(verbose=-1, n_estimators=5).fit(f[FEATURES], f["late"])


def test_out_must_be_empty_unless_forced(client: Client, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    exactly(AlreadyExists, build, "flights-delay/1", out, client=client)
    assert os.listdir(out) == ["notes.txt"]
    build("flights-delay/1", out, client=client, force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model").is_dir()
    build("flights-delay/1", out, client=client, force=True, fetch=True)
    assert not (out / "model").exists()  # the stale copy went with --force
    link = tmp_path / "link"
    link.symlink_to(out)
    exactly(InvalidInput, build, "flights-delay/1", link, client=client, force=True)
    (tmp_path / "k8s-target").mkdir()
    (out / "k8s").rename(tmp_path / "old-k8s")
    (out / "k8s").symlink_to(tmp_path / "k8s-target")
    exactly(InvalidInput, build, "flights-delay/1", out, client=client, force=True)
    assert not any((tmp_path / "k8s-target").iterdir())
    for bad in ({"cpu_request": "1; rm -rf /"}, {"image": "Evil Image"}, {"namespace": "a_b"}):
        exactly(InvalidInput, build, "flights-delay/1", tmp_path / "new", client=client, **bad)
    assert not (tmp_path / "new").exists()


def test_cli(client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_HOME", str(client.settings.home))
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(
        app, ["deploy", "build", "flights-delay@staging", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.output)
    assert doc["app"] == "strata-flights-delay" and "k8s/deployment.yaml" in doc["files"]
    load_manifests(out)
    again = CliRunner().invoke(app, ["deploy", "build", "flights-delay@staging", "--out", str(out)])
    assert isinstance(again.exception, AlreadyExists)


def test_the_image_entry_point_serves_the_copied_model(client: Client, tmp_path: Path) -> None:
    """What the container runs, run here (no Docker daemon on this machine): bootstrap.py
    with the ConfigMap's settings checks the copied model's digest, logs it into an empty
    STRATA_HOME and execs the real `strata serve`, which answers the probes' routes and a
    prediction for the admin token's bearer."""
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from conftest import free_port

    out = tmp_path / "ctx"
    build("flights-delay/1", out, client=client)
    cm = yaml.safe_load((out / "k8s" / "configmap.yaml").read_text())["data"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(cm)
    env.update(
        STRATA_HOME=str(tmp_path / "container-home"),
        STRATA_MODEL_DIR=str(out / "model"),
        STRATA_SERVE_HOST="127.0.0.1",
        STRATA_SERVE_PORT=str(port),
        STRATA_ADMIN_TOKEN="strata_" + "a" * 43,
        STRATA_BOOTSTRAP_PRINT="1",
    )
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "strata").symlink_to(Path(sys.executable).parent / "strata")
    env["PATH"] = f"{tmp_path / 'bin'}:{env.get('PATH', '')}"
    proc = subprocess.Popen(
        [sys.executable, str(out / "bootstrap.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/v2/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, (
            proc.stdout.read1() if proc.stdout else b""
        )  # type: ignore[union-attr]
        assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 200
        frame = flights(20, seed=5)
        body = {"records": frame[FEATURES].to_dict("records")}
        url = f"{base}/v1/models/flights-delay/predict"
        assert httpx.post(url, json=body, timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {env['STRATA_ADMIN_TOKEN']}"}
        got = httpx.post(url, json=body, headers=auth, timeout=10)
        assert got.status_code == 200, got.text
        want = sm.load(out / "model").predict(frame[FEATURES])
        assert got.json()["predictions"] == want.tolist()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    # a model swapped in the image is refused before anything is served
    (out / "model" / "strata-model.yaml").write_text(
        (out / "model" / "strata-model.yaml").read_text() + "\n"
    )
    env["STRATA_HOME"] = str(tmp_path / "home-2")
    done = subprocess.run(
        [sys.executable, str(out / "bootstrap.py")], env=env, capture_output=True, timeout=120
    )
    assert done.returncode != 0 and b"not the model this image was built for" in done.stderr


def test_the_fetch_mode_entry_point_serves_from_a_strata_server(
    client: Client, tmp_path: Path
) -> None:
    """--fetch: the container loads the alias from a real Strata server (STRATA_URI, with a
    token allowed to read it) and checks its own callers' tokens against its own store, where
    STRATA_ADMIN_TOKEN is bootstrapped; it starts, answers the probes and predicts."""
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from conftest import free_port, start_server

    out = tmp_path / "fetch-ctx"
    for live in start_server(client.settings):
        build("flights-delay@staging", out, client=client, fetch=True, server_uri=live.url)
        cm = yaml.safe_load((out / "k8s" / "configmap.yaml").read_text())["data"]
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update(cm)
        env.update(
            STRATA_HOME=str(tmp_path / "fetch-home"),
            STRATA_TOKEN=live.admin_token,  # reads the model from the server
            STRATA_SERVE_HOST="127.0.0.1",
            STRATA_SERVE_PORT=str(port),
            STRATA_ADMIN_TOKEN="strata_" + "b" * 43,  # what the container's callers send
        )
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "strata").symlink_to(Path(sys.executable).parent / "strata")
        env["PATH"] = f"{tmp_path / 'bin'}:{env.get('PATH', '')}"
        proc = subprocess.Popen(
            [sys.executable, str(out / "bootstrap.py")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            ready = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = httpx.get(f"{base}/v2/health/ready", timeout=2)
                    if ready.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            output = b"" if proc.poll() is None or proc.stdout is None else proc.stdout.read()
            assert ready is not None and ready.status_code == 200, output
            frame = flights(10, seed=9)
            body = {"records": frame[FEATURES].to_dict("records")}
            url = f"{base}/v1/models/flights-delay/predict"
            assert httpx.post(url, json=body, timeout=10).status_code == 401
            wrong = {"Authorization": f"Bearer {live.admin_token}"}  # the server's, not ours
            assert httpx.post(url, json=body, headers=wrong, timeout=10).status_code == 401
            auth = {"Authorization": f"Bearer {env['STRATA_ADMIN_TOKEN']}"}
            got = httpx.post(url, json=body, headers=auth, timeout=10)
            assert got.status_code == 200, got.text
            want = sm.load("models:/flights-delay@staging", tracking=client.tracking)
            assert got.json()["predictions"] == want.predict(frame[FEATURES]).tolist()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_a_local_wheel_is_the_only_strata_ml_requirement(client: Client, tmp_path: Path) -> None:
    """The model's own strata-ml pin is dropped: with it, pip looked for strata-ml on the index
    beside the wheel and the image build failed (seen building the image with docker:
    'No matching distribution found for strata-ml==0.1.0')."""
    wheel = tmp_path / "strata_ml-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip: only its name is read
    out = tmp_path / "deploy"
    build("flights-delay/1", out, client=client, wheel=wheel)
    reqs = [r for r in (out / "requirements.txt").read_text().splitlines() if r[:1] != "#"]
    assert reqs[0] == f"strata-ml[models] @ file:///opt/strata/wheels/{wheel.name}"
    assert not [r for r in reqs[1:] if r.lower().startswith(("strata-ml", "strata_ml"))], reqs
    assert (out / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    assert any(r.startswith("lightgbm==") for r in reqs)
