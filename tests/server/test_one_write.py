"""One write per response (server/run.py ``_HeadWithBody``), seen from a raw client socket on
a real uvicorn with Strata's protocol: a response of known length arrives as one TCP segment
(the kernel's count of data segments received, TCP_INFO), and nothing that must go out at
once is held: a streamed response's head, ``100 Continue``, a HEAD answer, the head of a
response whose app failed before its body."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import serve_in_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO layout is Linux's")

BODY = b'{"ok": true}'
#: Offset of ``tcpi_data_segs_in`` in Linux's ``struct tcp_info`` (since 4.6).
_DATA_SEGS_IN = 152


class _App:
    """A bare ASGI app: each path is one way of answering."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        while True:  # the whole body (what a route does before answering)
            message = await receive()
            if not message.get("more_body"):
                break
        length = [(b"content-length", str(len(BODY)).encode())]
        if path == "/fixed":
            await send({"type": "http.response.start", "status": 200, "headers": length})
            await send({"type": "http.response.body", "body": BODY})
        elif path == "/empty":
            headers = [(b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/stream":  # chunked: the head goes out before the first chunk exists
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b"late", "more_body": False})
        elif path == "/fail":  # the head, then an error before the body
            await send({"type": "http.response.start", "status": 200, "headers": length})
            raise RuntimeError("failed after the head")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[_App, tuple[str, int]]]:
    app = _App()
    for url in serve_in_thread(app):
        host, port = url.removeprefix("http://").split(":")
        yield app, (host, int(port))


def _connect(addr: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(addr, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("<I", info, _DATA_SEGS_IN)[0])


def _request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    return _head(method, path, len(body), extra) + body


def _head(method: str, path: str, length: int, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _read_head(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the head: {bytes(buf)!r}"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    return head


def _read_exactly(sock: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(buf)} of {n} body bytes"
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def test_a_response_of_known_length_is_one_segment(served: tuple[_App, Any]) -> None:
    _, addr = served
    calls = 20
    with _connect(addr) as sock:
        before = _data_segments_in(sock)
        buf = bytearray()
        for _ in range(calls):  # keep-alive, one request at a time, as the mlflow client
            sock.sendall(_request("POST", "/fixed", b'{"x": 1}'))
            head = _read_head(sock, buf)
            assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 12" in head
            assert _read_exactly(sock, buf, len(BODY)) == BODY
        segments = _data_segments_in(sock) - before
    # uvicorn alone writes the head and the body apart: 2 segments per response
    assert segments == calls, f"{segments} data segments for {calls} responses"


def test_head_and_empty_answers_are_complete(served: tuple[_App, Any]) -> None:
    _, addr = served
    with _connect(addr) as sock:
        buf = bytearray()
        sock.sendall(_request("HEAD", "/fixed"))  # no body is written: the head must go alone
        head = _read_head(sock, buf)
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 12" in head
        sock.sendall(_request("POST", "/empty"))
        head = _read_head(sock, buf)
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 0" in head
        sock.sendall(_request("POST", "/fixed"))  # the connection still serves
        _read_head(sock, buf)
        assert _read_exactly(sock, buf, len(BODY)) == BODY


def test_a_streamed_head_is_not_held_for_its_body(served: tuple[_App, Any]) -> None:
    app, addr = served
    app.release.clear()
    with _connect(addr) as sock:
        buf = bytearray()
        sock.sendall(_request("GET", "/stream"))
        head = _read_head(sock, buf)  # arrives while the app still waits to be released
        assert b"transfer-encoding: chunked" in head
        app.release.set()
        assert _read_exactly(sock, buf, len(b"4\r\nlate\r\n0\r\n\r\n")) == b"4\r\nlate\r\n0\r\n\r\n"


def test_100_continue_goes_out_before_the_body_is_sent(served: tuple[_App, Any]) -> None:
    _, addr = served
    body = b'{"x": 2}'
    with _connect(addr) as sock:
        buf = bytearray()
        sock.sendall(_head("POST", "/fixed", len(body), "Expect: 100-continue\r\n"))
        assert _read_head(sock, buf).startswith(b"HTTP/1.1 100 Continue")
        before = _data_segments_in(sock)
        sock.sendall(body)
        assert _read_head(sock, buf).startswith(b"HTTP/1.1 200 ")
        assert _read_exactly(sock, buf, len(BODY)) == BODY
        assert _data_segments_in(sock) - before == 1  # the response itself: still one write


def test_an_app_failing_after_its_head_still_sends_the_head_and_closes(
    served: tuple[_App, Any],
) -> None:
    _, addr = served
    with _connect(addr) as sock:
        buf = bytearray()
        sock.sendall(_request("POST", "/fail"))
        assert _read_head(sock, buf).startswith(b"HTTP/1.1 200 ")  # as uvicorn sends it
        assert sock.recv(65536) == b""  # then closed: the client sees a short body
