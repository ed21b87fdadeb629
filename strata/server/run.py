"""Run the server: uvicorn with TCP_NODELAY on every accepted socket, graceful shutdown.

uvicorn with ``--workers`` > 1 does not set TCP_NODELAY on accepted sockets (uvicorn#3149),
so every reused keep-alive connection stalls ~40 ms (Nagle + delayed ACK). Our protocol
class sets it on each connection, for one worker or many.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from strata.core.config import Settings
from strata.core.errors import InvalidInput


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TCP_NODELAY set on the accepted socket."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not a TCP socket after all (e.g. a UNIX socket handed over)
        super().connection_made(transport)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_binding(host: str, auth: bool) -> None:
    """Refuse to serve without auth beyond loopback."""
    if not auth and not is_loopback(host):
        raise InvalidInput(
            f"Refusing to start without authentication on {host}: --no-auth is allowed only "
            "when binding to loopback (127.0.0.1, ::1, localhost). Drop --no-auth and use "
            "API tokens, or bind to 127.0.0.1.",
            details={"field": "host"},
        )


def serve(settings: Settings, *, host: str, port: int, workers: int, auth: bool) -> None:
    """Start uvicorn and block until it shuts down (SIGINT/SIGTERM drain in-flight requests)."""
    import uvicorn

    check_auth_binding(host, auth)
    os.environ["STRATA_AUTH"] = "true" if auth else "false"
    os.environ["STRATA_HOME"] = str(settings.home)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": NoDelayHttpToolsProtocol,
        "timeout_graceful_shutdown": 15,
        "log_config": None,
        "access_log": False,
        "server_header": False,
    }
    if workers > 1:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="strata-prom-")
        uvicorn.run("strata.server.app:app_from_env", factory=True, workers=workers, **common)
    else:
        from strata.server.app import create_app

        uvicorn.run(create_app(settings, auth=auth), **common)
