"""Redis Streams as a :class:`StreamSource`, read with a consumer group (XREADGROUP/XACK).

Positions are ``{"<stream>": "<last entry id consumed>"}``. On :meth:`start` with a position,
the group's last-delivered id is set back (or forward) to it (``XGROUP SETID``) and the
entries still pending up to it are acknowledged: they are durable at the caller already. So
after a crash anywhere, entries after the caller's position are delivered again (the ones
left pending included) and entries up to it are never delivered twice. Without a position, a
new group starts at the stream's beginning (``start="earliest"``) or end (``"latest"``); an
existing group resumes from its oldest pending entry (delivered, never acknowledged) or else
where it left off.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from strata.backends.streams.base import (
    Positions,
    RedisStreamConfig,
    StreamRecord,
    StreamSink,
    StreamSource,
)
from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, Unavailable

_MAX_SEQ = 2**64 - 1
_ACK_CHUNK = 1000


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """``"<ms>-<seq>"`` (or ``"<ms>"``) as a comparable pair; InvalidInput when malformed."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise InvalidInput(
            f"Redis stream entry id {text!r} is not of the form <milliseconds>-<sequence>",
            details={"id": text},
        ) from None


def id_before(entry_id: str | bytes) -> str:
    """The greatest possible entry id smaller than ``entry_id`` (``0-0`` at the bottom)."""
    ms, seq = parse_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0-0"


def connect(config: RedisStreamConfig, what: str, details: dict[str, Any]) -> redis.Redis:
    """A client for ``config.url`` with its timeouts (no I/O yet); InvalidInput naming
    ``what`` for a malformed URL."""
    try:
        return redis.Redis.from_url(
            config.url.get_secret_value(),
            socket_timeout=config.timeout_seconds,
            socket_connect_timeout=config.timeout_seconds,
        )
    except ValueError as exc:
        raise InvalidInput(
            f"{what}: invalid URL: {redact_uri(str(exc))}", details=details
        ) from None


class RedisStreamSource(StreamSource):
    """Reads ``config.stream`` as consumer ``config.consumer`` of group ``config.group``."""

    def __init__(self, config: RedisStreamConfig) -> None:
        self.config = config
        self.key = f"redis:{config.stream}"
        base = redact_uri(config.url.get_secret_value()).split("?")[0]
        self.display = f"{base}?stream={config.stream}"
        self._client: redis.Redis | None = None
        self._delivered: list[tuple[tuple[int, int], bytes]] = []

    def _fail(self, what: str, exc: BaseException) -> Exception:
        if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
            return InvalidInput(
                f"Redis key {self.config.stream!r} at {self.display} is not a stream; name a "
                "stream (XADD creates one)",
                details={"stream": self.config.stream, "source": self.display},
            )
        return Unavailable(
            f"Redis at {self.display}: {what} failed: {redact_uri(str(exc))}; check that the "
            "server is running and reachable from here",
            details={"source": self.display},
        )

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise InvalidInput(
                f"Redis source {self.display} is not started: call start() first",
                details={"source": self.display},
            )
        return self._client

    def start(self, positions: Positions | None) -> None:
        if self._client is not None:
            raise InvalidInput(
                f"Redis source {self.display} is started already", details={"source": self.display}
            )
        c = self.config
        client = connect(c, f"Redis source {self.display}", {"source": self.display})
        try:
            created = self._ensure_group(client)
            last = (positions or {}).get(c.stream)
            if last is not None:
                parse_id(str(last))
                client.xgroup_setid(c.stream, c.group, str(last))
                self._ack_pending(client, str(last))
            elif not created:
                summary = client.xpending(c.stream, c.group)
                if summary.get("pending"):
                    client.xgroup_setid(c.stream, c.group, id_before(summary["min"]))
        except redis.RedisError as exc:
            client.close()
            raise self._fail("positioning the consumer group", exc) from None
        self._client = client

    def _ensure_group(self, client: redis.Redis) -> bool:
        """Create the group (and an empty stream) when missing; True if it was created."""
        c = self.config
        try:
            client.xgroup_create(
                c.stream, c.group, id="0" if c.start == "earliest" else "$", mkstream=True
            )
        except redis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    def _ack_pending(self, client: redis.Redis, upto: str) -> None:
        c = self.config
        while True:
            pending = client.xpending_range(c.stream, c.group, min="-", max=upto, count=_ACK_CHUNK)
            if not pending:
                return
            client.xack(c.stream, c.group, *[p["message_id"] for p in pending])

    def poll(self, max_records: int, timeout: float) -> list[StreamRecord]:
        if max_records <= 0:
            return []
        c = self.config
        # the socket timeout must outlast the server-side block
        block = int(min(max(timeout, 0), c.timeout_seconds / 2) * 1000)
        try:
            reply: Any = self.client.xreadgroup(
                c.group, c.consumer, {c.stream: ">"}, count=max_records, block=block or None
            )
        except redis.RedisError as exc:
            raise self._fail("reading", exc) from None
        out: list[StreamRecord] = []
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                self._delivered.append((parse_id(entry_id), raw_id))
                out.append(self._record(entry_id, fields or {}))
        return out

    def _record(self, entry_id: str, fields: dict[bytes, bytes]) -> StreamRecord:
        ms = parse_id(entry_id)[0]
        field = self.config.field
        if field is not None:
            value = fields.get(field.encode())
            if value is None:
                names = ", ".join(repr(k.decode("utf-8", "replace")) for k in fields)
                return StreamRecord(
                    self.config.stream,
                    entry_id,
                    value=None,
                    timestamp_ms=ms,
                    problem=f"entry has no field {field!r} (fields: {names or 'none'})",
                )
            return StreamRecord(self.config.stream, entry_id, value=value, timestamp_ms=ms)
        try:
            doc = {k.decode(): v.decode() for k, v in fields.items()}
        except UnicodeDecodeError:
            doc = {
                k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                for k, v in fields.items()
            }
            return StreamRecord(
                self.config.stream,
                entry_id,
                value=json.dumps(doc).encode(),
                timestamp_ms=ms,
                problem="a field name or value is not UTF-8 text",
            )
        return StreamRecord(
            self.config.stream, entry_id, value=json.dumps(doc).encode(), timestamp_ms=ms
        )

    def commit(self, positions: Positions) -> None:
        last = positions.get(self.config.stream)
        if last is None or not self._delivered:
            return
        upto = parse_id(str(last))
        n = 0
        while n < len(self._delivered) and self._delivered[n][0] <= upto:
            n += 1
        ids = [raw for _, raw in self._delivered[:n]]
        try:
            for i in range(0, len(ids), _ACK_CHUNK):
                self.client.xack(self.config.stream, self.config.group, *ids[i : i + _ACK_CHUNK])
        except redis.RedisError as exc:
            raise self._fail("acknowledging entries", exc) from None
        del self._delivered[:n]

    def pending(self) -> int:
        """How many entries the group has delivered and not had acknowledged."""
        try:
            summary = self.client.xpending(self.config.stream, self.config.group)
        except redis.RedisError as exc:
            raise self._fail("reading pending entries", exc) from None
        return int(summary.get("pending") or 0)

    def after(self, record: StreamRecord) -> Any:
        return str(record.offset)

    def covers(self, positions: Positions, record: StreamRecord) -> bool:
        stored = positions.get(record.partition)
        return stored is not None and parse_id(str(record.offset)) <= parse_id(str(stored))

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()


class RedisStreamSink(StreamSink):
    """Appends to ``config.stream`` with XADD: field ``config.field`` (default ``data``) holds
    the value and field ``key`` the key; ``send`` pipelines, ``flush`` executes."""

    def __init__(self, config: RedisStreamConfig) -> None:
        self.config = config
        base = redact_uri(config.url.get_secret_value()).split("?")[0]
        self.display = f"{base}?stream={config.stream}"
        self._client: redis.Redis | None = connect(
            config, f"Redis sink {self.display}", {"sink": self.display}
        )
        self._queued: list[tuple[bytes | None, bytes]] = []

    def send(self, records: list[tuple[bytes | None, bytes]]) -> None:
        self._queued.extend(records)

    def flush(self, timeout: float | None = None) -> None:
        if self._client is None:
            raise InvalidInput(
                f"Redis sink {self.display} is closed", details={"sink": self.display}
            )
        field = self.config.field or "data"
        queued, self._queued = self._queued, []
        try:
            for i in range(0, len(queued), _ACK_CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for key, value in queued[i : i + _ACK_CHUNK]:
                    fields: dict[str, bytes] = {field: value}
                    if key is not None:
                        fields["key"] = key
                    pipe.xadd(self.config.stream, fields)  # type: ignore[arg-type]
                pipe.execute()
        except redis.RedisError as exc:
            self._queued = queued + self._queued  # nothing is known to be durable
            if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc):
                raise InvalidInput(
                    f"Redis key {self.config.stream!r} at {self.display} is not a stream",
                    details={"stream": self.config.stream, "sink": self.display},
                ) from None
            raise Unavailable(
                f"Redis at {self.display}: adding entries failed: {redact_uri(str(exc))}; "
                "check that the server is running and reachable from here",
                details={"sink": self.display},
            ) from None

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
