"""The hot routes answered from the protocol's parser callbacks (server/run.py
``NoDelayHttpToolsProtocol``, ``fastpath.HotEntry.answer_now``), seen from a raw client
socket on a real uvicorn: the same answer the stack gives, in order when pipelined, the
connection kept alive and then closed when idle, and every request it must not take (HTTP/1.0,
``Connection: close``, ``Expect``, proxy headers) left to the stack as before."""

from __future__ import annotations

import gc
import json
import socket
import time
from typing import Any

import pytest

from strata.core.principal import Role
from strata.server.fastpath import HotEntry

from .conftest import AppEnv

API = "/api/2.0/mlflow"


def _request(env: AppEnv, run_id: str, step: int, *extra: str, version: str = "1.1") -> bytes:
    body = json.dumps(
        {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": step}
    ).encode()
    lines = [
        f"POST {API}/runs/log-metric HTTP/{version}",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {env.tokens[Role.EDITOR]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"X-Request-ID: step-{step}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _connect(env: AppEnv) -> socket.socket:
    host, port = str(env.http.base_url.host), int(env.http.base_url.port or 80)
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Reader:
    """Responses read off a socket one at a time (Content-Length framed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, list[tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed; read {self.buf!r}"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [(n.lower(), v.strip()) for n, v in (line.split(":", 1) for line in lines)]
        status = int(status_line.split()[1])
        if dict(headers).get("transfer-encoding") == "chunked":
            return status, headers, self._chunks()
        length = int(dict(headers).get("content-length", "0"))
        while len(self.buf) < length:
            assert self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def _chunks(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                assert self._fill()
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(self.buf) < size + 2:
                assert self._fill()
            body, self.buf = body + self.buf[:size], self.buf[size + 2 :]
            if size == 0:
                return body

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False


@pytest.fixture
def answered(env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The request ids the protocol answered itself (HotEntry.answer_now answers)."""
    hot: HotEntry = env.app.hot_entry
    ids: list[str] = []
    real = hot.answer_now

    def counting(scope: Any, body: bytes) -> Any:
        answer = real(scope, body)
        if answer is not None:
            ids.append(answer[1])
        return answer

    monkeypatch.setattr(hot, "answer_now", counting)
    return ids


def test_the_protocols_answer_is_the_stacks(env: AppEnv, answered: list[str]) -> None:
    run_id = env.new_run()
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(_request(env, run_id, 1))
        mine = reader.response()
        assert answered == ["step-1"]
        # With a proxy header the request goes through uvicorn's middleware and the stack
        # (HotEntry.serve answers it there, lean too).
        sock.sendall(_request(env, run_id, 2, "X-Forwarded-For: 10.1.2.3"))
        stacks = reader.response()
        assert answered == ["step-1"]
    assert mine[0] == stacks[0] == 200 and mine[2] == stacks[2] == b"{}"
    assert [n for n, _ in mine[1]] == [n for n, _ in stacks[1]]
    same = {"content-type", "content-length", "server"}
    assert [h for h in mine[1] if h[0] in same] == [h for h in stacks[1] if h[0] in same]
    assert ("x-request-id", "step-1") in mine[1] and ("x-request-id", "step-2") in stacks[1]
    assert env.loss_steps(run_id) == [1, 2]


def test_pipelined_requests_are_answered_in_order(env: AppEnv, answered: list[str]) -> None:
    run_id = env.new_run()
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(
            _request(env, run_id, 1)
            + _request(env, run_id, 2)
            + health
            + _request(env, run_id, 3)
            + _request(env, run_id, 4)
        )
        got = [reader.response() for _ in range(5)]
    assert [g[0] for g in got] == [200] * 5
    ids = [dict(g[1]).get("x-request-id") for g in got]
    assert ids[:2] == ["step-1", "step-2"] and ids[3:] == ["step-3", "step-4"]
    assert json.loads(got[2][2]).get("status") == "ok", got[2]
    assert answered[:1] == ["step-1"] and "step-2" not in answered  # behind it: a cycle
    assert env.loss_steps(run_id) == [1, 2, 3, 4]


def test_one_read_of_pipelined_calls_gets_one_answer_here(env: AppEnv, answered: list[str]) -> None:
    """The rest of the read wait as cycles, one at a time, with the reading paused: a
    client pipelining calls never holds the event loop for a whole read buffer."""
    run_id = env.new_run()
    calls = 60
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(b"".join(_request(env, run_id, i) for i in range(calls)))
        assert [reader.response()[0] for _ in range(calls)] == [200] * calls
    assert 1 <= len(answered) <= 5  # one per read (60 calls: ~18 KB, one read or a few)
    assert env.loss_steps(run_id) == list(range(calls))


def test_a_shutdown_while_a_body_arrives_answers_it_then_closes(
    env: AppEnv, answered: list[str]
) -> None:
    """uvicorn's shutdown closes a connection with no cycle in flight: a hot call whose body
    was still arriving would have been cut off unanswered."""
    run_id = env.new_run()
    request = _request(env, run_id, 3)
    head, body = request.split(b"\r\n\r\n", 1)
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(head + b"\r\n\r\n" + body[:10])
        time.sleep(0.2)
        proto = _protocol_of(sock)
        proto.loop.call_soon_threadsafe(proto.shutdown)  # what the server's shutdown calls
        time.sleep(0.2)
        sock.sendall(body[10:])
        status, headers, answer = reader.response()
        assert (status, answer) == (200, b"{}")
        assert ("connection", "close") in headers
        assert reader.closed_within(5)
    assert answered == []  # answered by the closing cycle
    assert env.loss_steps(run_id) == [3]


def test_kept_alive_then_closed_when_idle(env: AppEnv, answered: list[str]) -> None:
    """Each answer arms uvicorn's keep-alive timer (5 s here): the connection serves more
    calls, and an idle one is closed (a connection nobody uses must not stay forever)."""
    run_id = env.new_run()
    with _connect(env) as sock:
        reader = _Reader(sock)
        for step in range(3):
            sock.sendall(_request(env, run_id, step))
            assert reader.response()[0] == 200
        assert answered == ["step-0", "step-1", "step-2"]
        started = time.monotonic()
        assert reader.closed_within(15)
        assert 3 < time.monotonic() - started < 12


@pytest.mark.parametrize(
    ("extra", "version", "closes"),
    [
        ((), "1.0", True),
        (("Connection: close",), "1.1", True),
        (("Expect: 100-continue",), "1.1", False),
        (("X-Forwarded-Proto: https",), "1.1", False),
    ],
    ids=["http-1.0", "connection-close", "expect", "proxy-header"],
)
def test_what_the_protocol_leaves_to_the_stack(
    env: AppEnv, answered: list[str], extra: tuple[str, ...], version: str, closes: bool
) -> None:
    run_id = env.new_run()
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(_request(env, run_id, 7, *extra, version=version))
        status, headers, body = reader.response()
        if status == 100:  # Expect: the stack's interim answer, then the response
            status, headers, body = reader.response()
        assert (status, body) == (200, b"{}"), body
        assert ("connection", "close") in headers if closes else True
        if closes:
            assert reader.closed_within(5)
    assert answered == []
    assert env.loss_steps(run_id) == [7]


def test_an_upgrade_request_is_the_stacks(env: AppEnv, answered: list[str]) -> None:
    """uvicorn hands a request asking to upgrade (here to h2c) to the app without its body
    (the parser leaves what follows the head to the new protocol): so does this path."""
    run_id = env.new_run()
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(_request(env, run_id, 7, "Connection: Upgrade", "Upgrade: h2c"))
        status, _, body = reader.response()
    assert status == 400 and b"run_id" in body
    assert answered == []
    assert env.loss_steps(run_id) == []


def test_a_hot_path_that_raises_is_the_stacks_500_and_never_runs_twice(
    env: AppEnv, answered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raising after its commit (here: deciding on housekeeping), the call must not be
    written again by a second try; the client gets the stack's 500 with its request id."""
    run_id = env.new_run()
    hot = env.app.state.hot_writer

    def broken(seq: int) -> bool:
        raise RuntimeError("housekeeping broke")

    monkeypatch.setattr(hot, "housekeeping_due", broken)
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(_request(env, run_id, 5))
        status, headers, body = reader.response()
        assert status == 500, body
        assert json.loads(body)["error_code"] == "INTERNAL_ERROR"
        assert ("x-request-id", "step-5") in headers
        assert "housekeeping broke" not in body.decode()
        monkeypatch.undo()
        sock.sendall(_request(env, run_id, 6))  # the connection still serves
        assert reader.response()[0] == 200
    assert env.loss_steps(run_id) == [5, 6]


def _protocol_of(sock: socket.socket) -> Any:
    """The server's protocol object of this connection (found by the client's port)."""
    from strata.server.run import NoDelayHttpToolsProtocol

    port = sock.getsockname()[1]
    for obj in gc.get_objects():
        if isinstance(obj, NoDelayHttpToolsProtocol) and obj.client and obj.client[1] == port:
            return obj
    raise AssertionError("no protocol for this connection")


def test_a_client_that_reads_no_answers_is_held_back(env: AppEnv, answered: list[str]) -> None:
    """Once a client's unread answers fill the transport (uvicorn pauses its writing), a
    hot call waits as an ordinary cycle for the drain (pipelined ones behind it stop the
    reading) instead of being answered into an ever-growing buffer."""
    run_id = env.new_run()
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(_request(env, run_id, 1))
        assert reader.response()[0] == 200 and answered == ["step-1"]
        proto = _protocol_of(sock)
        proto.loop.call_soon_threadsafe(proto.flow.pause_writing)  # as the transport does
        time.sleep(0.2)
        sock.sendall(_request(env, run_id, 2))
        sock.settimeout(1)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # held: the cycle waits for the drain
        proto.loop.call_soon_threadsafe(proto.flow.resume_writing)
        sock.settimeout(10)
        assert reader.response()[0] == 200
    assert answered == ["step-1"]  # the second by the stack
    assert env.loss_steps(run_id) == [1, 2]


def test_failed_housekeeping_is_logged_after_the_answer(
    env: AppEnv, answered: list[str], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    run_id = env.new_run()
    hot = env.app.state.hot_writer

    def broken(seq: int) -> None:
        raise RuntimeError("checkpoint broke")

    due = iter([True])
    monkeypatch.setattr(hot, "housekeeping", broken)
    monkeypatch.setattr(hot, "housekeeping_due", lambda seq: next(due, False))
    with caplog.at_level("ERROR", logger="strata.server"), _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(_request(env, run_id, 1))
        assert reader.response()[0] == 200
        deadline = time.monotonic() + 10
        while "Housekeeping after a hot call failed" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        assert "checkpoint broke" in caplog.text
        sock.sendall(_request(env, run_id, 2))
        assert reader.response()[0] == 200
    assert answered == ["step-1", "step-2"]
    assert env.loss_steps(run_id) == [1, 2]


def test_a_length_with_thousands_of_digits_is_the_stacks(env: AppEnv, answered: list[str]) -> None:
    """llhttp takes a Content-Length of 5,000 leading zeros; Python's int() refuses more than
    4,300 digits: parsed here, it raised inside the parser's callback (uvicorn's 400), and in
    HotEntry.serve (a 500). The stack reads it as the length it is."""
    run_id = env.new_run()
    request = _request(env, run_id, 4)
    head, body = request.split(b"\r\n\r\n", 1)
    head = head.replace(b"Content-Length: ", b"Content-Length: " + b"0" * 5000)
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(head + b"\r\n\r\n" + body)
        status, _, answer = reader.response()
    assert (status, answer) == (200, b"{}")  # was 400 here, and 500 on the ASGI path
    assert answered == []
    assert env.loss_steps(run_id) == [4]


class _Wrapper:
    """An ASGI middleware of the usual shape (``self.app``) in front of the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def test_only_uvicorns_proxy_wrapper_may_stand_in_front(env: AppEnv) -> None:
    """Answering from the protocol skips whatever wraps the app: uvicorn's proxy-headers
    middleware (the protocol leaves requests with proxy headers to it) and nothing else —
    not uvicorn's trace-level message logger, not a middleware added around the app."""
    from uvicorn.middleware.message_logger import MessageLoggerMiddleware
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from strata.server.run import _hot_entry

    app = env.app
    assert _hot_entry(app) is app.hot_entry is not None
    assert _hot_entry(ProxyHeadersMiddleware(app)) is app.hot_entry
    assert _hot_entry(MessageLoggerMiddleware(app)) is None
    assert _hot_entry(_Wrapper(app)) is None
    assert _hot_entry(ProxyHeadersMiddleware(_Wrapper(app))) is None


def test_a_request_id_with_a_control_character_is_replaced(
    env: AppEnv, answered: list[str]
) -> None:
    """The protocol writes the answer's head itself: a caller's X-Request-ID goes into it
    only when short and printable (a tab passes the HTTP parser), as on the stack."""
    run_id = env.new_run()
    request = _request(env, run_id, 1).replace(b"X-Request-ID: step-1", b"X-Request-ID: a\tb")
    with _connect(env) as sock:
        reader = _Reader(sock)
        sock.sendall(request)
        status, headers, _ = reader.response()
    sent = dict(headers)["x-request-id"]
    assert status == 200 and len(answered) == 1 and sent == answered[0]
    assert "\t" not in sent and len(sent) == 32 and int(sent, 16) >= 0
