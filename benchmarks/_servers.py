"""Start and stop real servers for benchmarks (strata server, mlflow server) on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def started(
    cmd: list[str],
    ready: Callable[[], bool],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 90,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in a session of its own (output to ``log``) until ``ready()`` says so
    (an HTTP error counts as not yet); then stop it and whatever it started (SIGTERM, then
    SIGKILL after 20 s). Raises, with the log's tail, when it exits or is not ready within
    ``timeout`` seconds."""
    out = log.open("wb")
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{cmd[0]} exited with {proc.returncode} before it was ready; its log "
                    f"({log}) ends:\n{log.read_text(errors='replace')[-2000:]}"
                )
            try:
                if ready():
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} was not ready within {timeout:.0f} s: see {log}")
            time.sleep(0.25)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.close()


def answers(url: str) -> Callable[[], bool]:
    """Ready once ``GET url`` answers below 500."""
    return lambda: httpx.get(url, timeout=2).status_code < 500


@contextmanager
def strata_server(home: Path, *, workers: int = 1, token: str) -> Iterator[str]:
    """``strata server`` with auth on; the admin token is ``token``."""
    port = free_port()
    env = dict(
        os.environ, STRATA_HOME=str(home), STRATA_ADMIN_TOKEN=token, STRATA_LOG_LEVEL="WARNING"
    )
    cmd = [str(VENV_BIN / "strata"), "server", "--port", str(port), "--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    with started(cmd, answers(f"{url}/healthz"), home / "server.log", env=env):
        yield url


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """``mlflow server`` with its defaults and a SQLite backend, as users run it."""
    exe = shutil.which("mlflow", path=str(VENV_BIN)) or "mlflow"
    port = free_port()
    cmd = [
        exe,
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    log = root / "mlflow-server.log"
    with started(cmd, answers(f"{url}/health"), log, cwd=root, timeout=180):
        yield url
