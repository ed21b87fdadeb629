"""Attacks on server-side http(s) ingestion (issue 7, item 2): a redirector on a
non-loopback address pointing at a loopback service, internal address literals, port probing,
and the IPv6 literals that must keep working."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer, free_port, start_server

from strata.core.config import Settings
from strata.data.fetch import refused

SECRET = b"token\nhunter2\n"
GOOD = b"a,b\n1,x\n2,y\n"


def _local_address(family: socket.AddressFamily, probe: str) -> str:
    """This machine's non-loopback source address for ``family`` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))
        except OSError:
            (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
                f"no non-loopback {family.name} address on this machine"
            )
        return str(s.getsockname()[0])


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _serve(host: str, handle: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def log_message(self, *args: object) -> None:
            return

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _Server.address_family = family
    server = _Server((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    req.send_response(status)
    for k, v in headers.items():
        req.send_header(k.replace("_", "-"), v)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


@pytest.fixture
def secret_service() -> Iterator[str]:
    """A loopback-only service holding a secret (think: an internal admin endpoint)."""
    yield from _serve("127.0.0.1", lambda r: _send(r, 200, SECRET))


@pytest.fixture
def public_v4() -> str:
    return _local_address(socket.AF_INET, "203.0.113.1")


@pytest.fixture
def redirector(public_v4: str, secret_service: str) -> Iterator[str]:
    """A web server on a non-loopback address: /evil.csv redirects to the secret service,
    /hop.csv redirects to /good.csv on itself, /good.csv is ordinary data."""

    def handle(r: BaseHTTPRequestHandler) -> None:
        if r.path == "/evil.csv":
            _send(r, 302, Location=f"{secret_service}/secret.csv")
        elif r.path == "/hop.csv":
            _send(r, 301, Location="/good.csv")
        elif r.path == "/good.csv":
            _send(r, 200, GOOD)
        else:
            _send(r, 404)

    yield from _serve(public_v4, handle)


def _server(tmp_path: Path, allow: str) -> Iterator[LiveServer]:
    settings = Settings(home=tmp_path / "server-home", source_allow_networks=allow)
    yield from start_server(settings)


def _ingest(server: LiveServer, name: str, source: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        return http.post(f"/api/v1/data/datasets/{name}/ingest", json={"source": source})


def test_a_redirect_to_loopback_is_refused_at_the_hop(
    tmp_path: Path, redirector: str, public_v4: str
) -> None:
    for server in _server(tmp_path, f"{public_v4}/32"):
        r = _ingest(server, "stolen", f"{redirector}/evil.csv")
        assert r.status_code == 400, r.text
        assert "hunter2" not in r.text and "does not fetch" in r.json()["message"]
        r = server.client().data.list_datasets()
        assert [d.name for d in r] == []
        # Redirects between allowed addresses still work, and the source is recorded.
        r2 = _ingest(server, "fine", f"{redirector}/hop.csv")
        assert r2.status_code == 201, r2.text
        assert r2.json()["rows"] == 2
        source = server.client().data.get_version("fine").source
        assert source["uri"] == f"{redirector}/hop.csv"


@pytest.mark.parametrize(
    "source",
    [
        "http://127.0.0.1:5432/x.csv",
        "http://localhost:5432/x.csv",
        "http://[::1]:5432/x.csv",
        "http://[::ffff:127.0.0.1]:5432/x.csv",
        "http://0.0.0.0:5432/x.csv",
        "http://169.254.169.254/latest/meta-data/x.csv",
        "http://10.1.2.3/x.csv",
        "http://100.64.0.1/x.csv",
        "http://192.168.1.1/x.csv",
        "http://[fd00::1]/x.csv",
        "http://[fe80::1]/x.csv",
        "http://224.0.0.1/x.csv",
        "http://240.0.0.1/x.csv",
        "http://2130706433/x.csv",
    ],
)
def test_internal_addresses_are_refused_by_default(tmp_path: Path, source: str) -> None:
    for server in _server(tmp_path, ""):
        r = _ingest(server, "probe", source)
        assert r.status_code == 400, (source, r.text)
        assert "does not fetch" in r.json()["message"] and "refused" not in r.text.lower()


def test_unreachable_sources_do_not_map_ports(tmp_path: Path, public_v4: str) -> None:
    port = free_port()  # nothing listens there
    for server in _server(tmp_path, f"{public_v4}/32"):
        r = _ingest(server, "probe", f"http://{public_v4}:{port}/x.csv")
        assert r.status_code == 503, r.text
        message = r.json()["message"]
        assert "unreachable (request id " in message and r.headers["x-request-id"] in message
        assert "Connect" not in message and "Errno" not in message and "refused" not in message


def test_public_ipv6_literals_work(tmp_path: Path) -> None:
    v6 = _local_address(socket.AF_INET6, "2001:db8::1")
    for url in _serve(v6, lambda r: _send(r, 200, GOOD)):
        for server in _server(tmp_path, f"{v6}/128"):
            r = _ingest(server, "six", f"{url}/good.csv")
            assert r.status_code == 201, r.text
            assert r.json()["rows"] == 2


def test_refusal_rules() -> None:
    import ipaddress as ip

    assert not refused(ip.ip_address("8.8.8.8"))
    assert not refused(ip.ip_address("2606:4700:4700::1111"))
    assert refused(ip.ip_address("::ffff:10.0.0.1"))
    assert not refused(ip.ip_address("10.0.0.1"), [ip.ip_network("10.0.0.0/8")])
    assert refused(ip.ip_address("10.0.0.1"), [ip.ip_network("fd00::/8")])
