"""Run the server: uvicorn with TCP_NODELAY on every accepted socket, graceful shutdown.

uvicorn with ``--workers`` > 1 does not set TCP_NODELAY on accepted sockets (uvicorn#3149),
so every reused keep-alive connection stalls ~40 ms (Nagle + delayed ACK). Our protocol
class sets it on each connection, for one worker or many.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
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
        own_dir = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            own_dir = tempfile.mkdtemp(prefix="strata-prom-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
        try:
            with _exit_zero_after_shutdown():
                uvicorn.run(
                    "strata.server.app:app_from_env", factory=True, workers=workers, **common
                )
        finally:
            if own_dir is not None:
                shutil.rmtree(own_dir, ignore_errors=True)
    else:
        from strata.server.app import create_app

        app = create_app(settings, auth=auth)
        with _exit_zero_after_shutdown():
            uvicorn.run(app, **common)


@contextmanager
def _exit_zero_after_shutdown() -> Iterator[None]:
    """Make SIGINT/SIGTERM end the process with status 0 once uvicorn has drained.

    uvicorn handles the signal (graceful shutdown), restores the previous handler and then
    raises the signal again; with the default handler the process would die of SIGTERM
    (status -15) after a clean shutdown. A signal arriving before uvicorn takes over exits 0
    at once, as nothing is being served yet.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
