"""Run the server: uvicorn with TCP_NODELAY on every accepted socket, one write per
response, graceful shutdown.

uvicorn with ``--workers`` > 1 does not set TCP_NODELAY on accepted sockets (uvicorn#3149),
so every reused keep-alive connection stalls ~40 ms (Nagle + delayed ACK). Our protocol
class sets it on each connection, for one worker or many.

uvicorn writes a response's head (status line and headers) and its body with two writes:
with TCP_NODELAY, two segments, two wake-ups of the client, twice the kernel's loopback work.
Our protocol holds the head of a response whose length is known until its first body write
and sends both at once (:class:`_HeadWithBody`).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import ipaddress
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from strata.core.config import Settings
from strata.core.errors import Conflict, InvalidInput
from strata.server.fastpath import declared_length, hot_headers
from strata.server.middleware import internal_error_logged
from strata.tracking.mlflow_api.hot import MAX_LEAN_BODY


class _HeadWithBody:
    """The transport one request's cycle writes to: the head of a response with a known,
    non-zero length (``Content-Length``, not HEAD) waits for the first write of its body and
    goes out with it in one write. Everything else is written as it comes: a streamed
    (chunked) response's head at once, ``100 Continue`` before the response starts. A held
    head is written before the cycle closes the connection (an app that failed after it).
    """

    __slots__ = ("_cycle", "_head", "_seen_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._seen_head = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
            return
        cycle = self._cycle
        if not self._seen_head and cycle.response_started:  # the cycle writes its head first
            self._seen_head = True
            # A Content-Length (a chunked response's is 0) and a body to come (HEAD has none)
            if cycle.expected_content_length > 0 and cycle.scope["method"] != "HEAD":
                self._head = bytes(data)
                return
        self._transport.write(data)

    def close(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


def _hot_entry(app: Any) -> Any:
    """The :class:`~strata.server.fastpath.HotEntry` of the app uvicorn serves, or None. Only
    uvicorn's proxy-headers wrapper may stand in front of it (the protocol leaves requests
    with proxy headers to it); any other wrapper — uvicorn's trace-level message logger, or
    one added later — would be skipped by answering here, so then nothing is."""
    if isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    return getattr(app, "hot_entry", None)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TCP_NODELAY set on the accepted socket, each
    response written at once (:class:`_HeadWithBody`), and the hot routes' plain success
    answered from the parser's callbacks.

    The hot routes (the MLflow logging calls: ``fastpath.HotEntry``) cost the server about
    as much in uvicorn's ASGI machinery (a request-response cycle, a task, the app's
    ``receive``/``send`` messages) as in their own work. For a plain keep-alive HTTP/1.1
    ``POST`` to one (the first of its read: the ones pipelined behind it wait as cycles), with
    nothing pipelined before it, no ``Expect`` or ``Upgrade``, no proxy
    headers, no root path, its client reading its answers (the transport's writing not
    paused) and a declared ``Content-Length`` no larger than any hot call can be
    (``MAX_LEAN_BODY``), the body is gathered here and handed to ``HotEntry.answer_now``,
    which runs the stack's checks and the hot path; its answer is written as uvicorn would
    write it (status line, uvicorn's default headers, the same three headers) and the
    keep-alive timer armed as after any response. Anything else — not such a request, more
    body than declared, declined or refused — becomes an ordinary ASGI cycle with the body
    given to it, and the stack answers it exactly as before; a hot path that raised is
    logged here and the stack answers its 500 without running it again. A shutdown while a
    hot call's body arrives lets it end on a cycle that answers and closes, as uvicorn's
    shutdown lets a cycle in flight.
    (``tests/server/test_hot_protocol.py``: parity with the stack's answer, pipelining,
    keep-alive, HTTP/1.0, ``Connection: close``, ``Expect``, a raising hot path.)
    """

    _hot: Any = None
    _hot_body: list[bytes] | None = None
    _hot_size = 0
    _hot_declared = 0
    #: A hot call was answered in the current read: the next pipelined in it takes a cycle
    #: (one connection's pipelined calls never hold the event loop for a whole read).
    _hot_fed = False
    #: The server shut down while a hot call's body was arriving: it ends on a closing cycle.
    _hot_closing = False

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not a TCP socket after all (e.g. a UNIX socket handed over)
        self._hot = _hot_entry(self.app)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._hot_fed = False
        super().data_received(data)

    def shutdown(self) -> None:
        if self._hot_body is not None:  # no cycle yet: uvicorn's shutdown would close it
            self._hot_closing = True
            return
        super().shutdown()

    def on_message_begin(self) -> None:
        # A request answered from these callbacks armed the keep-alive timer; a request
        # pipelined behind it in the same read must not be cut off by it.
        self._unset_keepalive_if_required()
        self._hot_body = None
        super().on_message_begin()

    def _hot_candidate(self) -> bool:
        hot = self._hot
        if hot is None or self.parser.get_method() != b"POST" or self.pipeline or self._hot_fed:
            return False
        if self.flow.write_paused or self.parser.should_upgrade():
            # A client not reading its answers: an ordinary cycle waits for the drain (and
            # pipelined requests behind it stop the reading), where writing here would not.
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False
        if self.expect_100_continue or self.root_path or self.limit_concurrency is not None:
            return False
        if self.parser.get_http_version() != "1.1" or not self.parser.should_keep_alive():
            return False
        length = b""
        for name, value in self.headers:
            if name.startswith(b"x-forwarded-"):
                return False  # the proxy headers middleware's part
            if name == b"content-length":
                length = value
        declared = declared_length(length, MAX_LEAN_BODY)
        if declared is None:
            return False  # chunked, malformed, or larger than any hot call: never gathered
        url = httptools.parse_url(self.url)
        if url.query or url.path.find(b"%") >= 0:  # find: cheaper than `in` on bytes
            return False
        path = url.path.decode("ascii")
        if not hot.takes(path):
            return False
        self.scope["method"] = "POST"
        self.scope["path"] = path
        self.scope["raw_path"] = url.path
        self.scope["query_string"] = b""
        self._hot_declared = declared
        return True

    def on_headers_complete(self) -> None:
        if self._hot_candidate():
            self._hot_body, self._hot_size = [], 0
            return
        self._start_cycle()

    def _start_cycle(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # a new request's cycle
            cycle.transport = cast(asyncio.Transport, _HeadWithBody(self.transport, cycle))

    def _to_cycle(self, body: bytes) -> None:
        """The request gathered so far, handed to an ordinary ASGI cycle (one that closes
        the connection after its answer when the server is shutting down)."""
        self._hot_body = None
        self._start_cycle()
        if self._hot_closing and self.cycle is not None:
            self.cycle.keep_alive = False
        if body:
            super().on_body(body)

    def on_body(self, body: bytes) -> None:
        chunks = self._hot_body
        if chunks is None:
            super().on_body(body)
            return
        chunks.append(body)
        self._hot_size += len(body)
        if self._hot_size > self._hot_declared:  # more than declared: the stack's to judge
            self._to_cycle(b"".join(chunks))

    def on_message_complete(self) -> None:
        chunks = self._hot_body
        if chunks is None:
            super().on_message_complete()
            return
        body = b"".join(chunks)
        self._hot_body = None
        hot = self._hot
        try:
            answer = None if self._hot_closing else hot.answer_now(self.scope, body)
        except Exception:  # logged; the stack answers the 500 (it never runs it twice)
            hot.failed_now(self.scope)
            answer = None
        if answer is None:
            self._to_cycle(body)
            super().on_message_complete()
            return
        content, request_id, start, after = answer
        head = [b"HTTP/1.1 200 OK\r\n"]  # as uvicorn writes a response's head
        for name, value in [*self.server_state.default_headers, *hot_headers(content, request_id)]:
            head += [name, b": ", value, b"\r\n"]
        head += [b"\r\n", content]
        self.transport.write(b"".join(head))
        self._hot_fed = True
        try:
            hot.finish(self.scope, request_id, start)
            if after is not None:  # after the response, in a thread; shutdown waits for it
                task = self.loop.create_task(hot.housekeep(after))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
        except Exception:  # answered already: only logged
            internal_error_logged(cast(dict[str, Any], self.scope), request_id)
        self.server_state.total_requests += 1
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )


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


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (as uvicorn binds it), or one clear
    error: Conflict when the port is taken, InvalidInput when the address cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(
                f"Port {port} on {host} is already in use (another `strata server`?): stop "
                f"that process or choose another port, e.g. --port {port + 1 if port else 8081}",
                details={"field": "port", "port": port},
            ) from None
        raise InvalidInput(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port",
            details={"field": "host", "host": host, "port": port},
        ) from None
    sock.set_inheritable(True)  # worker processes serve on it
    return sock


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    auth: bool,
    on_started: Callable[[], None] | None = None,
    factory: str = "strata.server.app:app_from_env",
    app: Any = None,
) -> None:
    """Start uvicorn and block until it shuts down (SIGINT/SIGTERM drain in-flight requests).

    ``factory`` names the app factory spawned workers call (``strata serve`` passes its own);
    ``app`` is the app of a single worker (default: the Strata server's).

    The port is bound before anything else starts, so a port in use is one clear error;
    ``on_started`` runs once the server accepts connections (one worker: after the app's
    startup; several: once the port is bound, before the workers spawn).
    """
    check_auth_binding(host, auth)
    sock = bind_socket(host, port)
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
    try:
        if workers > 1:
            _serve_workers(sock, workers, common, on_started, factory)
        else:
            if app is None:
                from strata.server.app import create_app

                app = create_app(settings, auth=auth, freeze_heap=True)
            config = uvicorn.Config(app, **common)
            with _exit_zero_after_shutdown():
                _AnnouncingServer(config, on_started).run(sockets=[sock])
    finally:
        sock.close()


def _serve_workers(
    sock: socket.socket,
    workers: int,
    common: dict[str, Any],
    on_started: Callable[[], None] | None,
    factory: str = "strata.server.app:app_from_env",
) -> None:
    """What ``uvicorn.run(workers=N)`` does, on our already bound socket."""
    from uvicorn.supervisors import Multiprocess

    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="strata-prom-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        config = uvicorn.Config(factory, factory=True, workers=workers, **common)
        kwargs: dict[str, Any] = {"sockets": [sock]}
        if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.54
            kwargs["target"] = uvicorn.Server(config).run
        if on_started is not None:
            on_started()
        with _exit_zero_after_shutdown():
            Multiprocess(config, **kwargs).run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self._on_started is not None and not self.should_exit:
            self._on_started()


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
