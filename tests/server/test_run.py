"""Running the server: auth binding rules, first-start bootstrap, and the real `strata server`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from strata.cli.main import main
from strata.core.errors import InvalidInput
from strata.server.run import check_auth_binding, is_loopback

from .conftest import free_port

TOKEN_LINE = re.compile(r"^strata_[A-Za-z0-9_\-]{20,}$")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    check_auth_binding(host, auth=False)  # allowed
    check_auth_binding(host, auth=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "example.com", ""])
def test_no_auth_off_loopback_is_refused(host: str) -> None:
    assert not is_loopback(host)
    check_auth_binding(host, auth=True)  # auth on: any address is fine
    with pytest.raises(InvalidInput, match="Refusing to start without authentication") as info:
        check_auth_binding(host, auth=False)
    assert "--no-auth" in info.value.message
    assert info.value.details == {"field": "host"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "strata.cli.main", *args]


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "STRATA_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


def test_cli_refuses_no_auth_off_loopback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("STRATA_HOME", str(home))
    argv = ["strata", "server", "--host", "0.0.0.0", "--port", str(free_port()), "--no-auth"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()  # the console entry point, in-process
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert "Refusing to start without authentication on 0.0.0.0" in " ".join(err.split())
    assert "Traceback" not in out + err
    assert not home.exists()  # refused before touching anything


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def tokens_printed(self) -> list[str]:
        return [line.strip() for line in self.stdout if TOKEN_LINE.match(line.strip())]


@contextmanager
def cli_server(home: Path, *args: str, **env: str) -> Iterator[ServerProcess]:
    """Run `strata server` as a subprocess until it answers /healthz; stop it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        _cli("server", "--port", str(port), *args),
        env=_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}")
    readers = [
        threading.Thread(target=lambda s=s, out=out: out.extend(s), daemon=True)  # type: ignore[misc]
        for s, out in ((proc.stdout, server.stdout), (proc.stderr, server.stderr))
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"server exited: {''.join(server.stderr)}"
            assert time.monotonic() < deadline, "server did not answer /healthz in 60 s"
            banner = any("Strata serving on" in line for line in server.stdout)
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200 and banner:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=10)


def _stop(server: ServerProcess) -> None:
    """SIGTERM and expect a clean, prompt exit."""
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0, "".join(server.stderr)


def test_real_server_two_workers_keepalive_and_bootstrap(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with cli_server(home, "--workers", "2") as server:
        out = "".join(server.stdout)
        assert "First start" in out
        assert f"{server.url}/docs" in out and f"{server.url}/metrics" in out
        (token,) = server.tokens_printed()  # printed exactly once
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
            for _ in range(5):  # warm up the connection and the worker
                assert http.get("/api/v1/whoami").json()["name"] == "admin"
            times = []
            for _ in range(20):
                start = time.perf_counter()
                assert http.get("/api/v1/whoami").status_code == 200
                times.append(time.perf_counter() - start)
            # Without TCP_NODELAY every reused connection stalls ~40 ms (Nagle + delayed ACK);
            # the median is immune to the odd slow request of a busy CI machine.
            median = sorted(times)[len(times) // 2]
            assert median < 0.020, f"keep-alive requests: median {median * 1000:.0f} ms"
            assert http.get("/api/v1/users").status_code == 200
            metrics = http.get("/metrics").text
        counts = re.findall(
            r'strata_http_requests_total\{method="GET",route="/api/v1/whoami",status="200"\} '
            r"([0-9.]+)",
            metrics,
        )
        assert counts and float(counts[0]) >= 25, metrics[:2000]
        _stop(server)
    assert "Traceback" not in "".join(server.stderr)

    # second start on the same home: nothing is created, no token printed; the old one works
    env_token = "strata_" + "n" * 40
    with cli_server(home, STRATA_ADMIN_TOKEN=env_token) as again:
        out = "".join(again.stdout)
        assert "First start" not in out
        assert again.tokens_printed() == []
        whoami = f"{again.url}/api/v1/whoami"
        assert httpx.get(whoami, headers=headers).json()["name"] == "admin"
        bad = httpx.get(whoami, headers={"Authorization": f"Bearer {env_token}"})
        assert bad.status_code == 401
        _stop(again)


def test_real_server_takes_admin_token_from_environment(tmp_path: Path) -> None:
    env_token = "strata_" + "e" * 40
    with cli_server(tmp_path / "home", STRATA_ADMIN_TOKEN=env_token) as server:
        out = "".join(server.stdout)
        assert "First start" in out
        assert env_token not in out + "".join(server.stderr)  # never printed
        assert server.tokens_printed() == []
        r = httpx.get(
            f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {env_token}"}
        )
        assert r.status_code == 200 and r.json() == {
            "name": "admin",
            "role": "admin",
            "user_id": r.json()["user_id"],
        }
        assert httpx.get(f"{server.url}/api/v1/whoami").status_code == 401
        _stop(server)


def test_second_start_says_how_to_get_a_token_and_announces_only_when_serving(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with cli_server(home) as first:
        (token,) = first.tokens_printed()
        _stop(first)
    port = free_port()
    proc = subprocess.Popen(
        _cli("server", "--port", str(port)),
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if "Strata serving on" in line:
                break
        # the banner comes only once the port answers: no retry needed
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        out = " ".join("".join(lines).split())
        hint = "strata tokens create --user admin"
        assert hint in out, out
        created = subprocess.run(
            _cli(*hint.split()[1:]), env=_env(home), capture_output=True, text=True, timeout=60
        )
        assert created.returncode == 0, created.stderr
        (new_token,) = [w for w in created.stdout.split() if TOKEN_LINE.match(w)]
        for secret in (token, new_token):
            r = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/whoami",
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert r.json()["name"] == "admin"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            _cli("server", "--port", str(port)),
            env=_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    err = " ".join(done.stderr.split())
    assert f"Error: Port {port} on 127.0.0.1 is already in use" in err, err
    assert f"--port {port + 1}" in err
    assert "Traceback" not in done.stdout + done.stderr
    assert "serving on" not in done.stdout


def test_version() -> None:
    import strata

    done = subprocess.run(_cli("--version"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout == f"strata {strata.__version__}\n"
