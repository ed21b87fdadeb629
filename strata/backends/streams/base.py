"""The stream-source interface: poll records with their positions, commit positions.

A *position map* (``Positions``) is a JSON-able ``{partition: position}`` dict saying where
each partition has been consumed up to. What a partition and a position are depends on the
source, and only the source interprets them (:meth:`StreamSource.after`,
:meth:`StreamSource.covers`):

- Kafka: the partition number as a string → the **next** offset to read (Kafka's own
  convention for committed offsets), e.g. ``{"0": 1200, "1": 987}``.
- Redis Streams: the stream name → the **last** entry id consumed, e.g.
  ``{"events": "1718000000000-3"}``.

A consumer that stores a position map atomically with the data it consumed can hand it back to
:meth:`StreamSource.start` after a crash: the source then delivers only records after it,
whatever the broker itself remembered (the caller's store is the source of truth; the broker's
committed offsets only follow it, for monitoring and for other tools).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr

Positions = dict[str, Any]


@dataclass(frozen=True)
class StreamRecord:
    """One record as read from the broker, with where it came from.

    ``partition`` and ``offset`` are the source's own: a Kafka partition number (as a string)
    and integer offset, or a Redis stream name and entry id (``"<ms>-<seq>"``). ``value`` is
    the raw payload (None for a Kafka tombstone); ``timestamp_ms`` is the broker's time in
    epoch milliseconds when it has one. ``problem`` says why the source could not extract a
    payload (e.g. a Redis entry without the configured field); ``value`` then holds what there
    was, for the record's quarantine row.
    """

    partition: str
    offset: int | str
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None
    problem: str | None = None

    @property
    def label(self) -> str:
        """Where the record is, for people: ``partition 0 offset 17`` / ``id 1718-0``."""
        if isinstance(self.offset, int):
            return f"partition {self.partition} offset {self.offset}"
        return f"id {self.offset}"


class _Closing(ABC):
    """A context manager that calls ``close`` on exit."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StreamSource(_Closing):
    """A stream of records read in order per partition, with positions committed at the source.

    Use: ``start(positions)`` once, then ``poll``/``commit`` as often as needed, then
    ``close`` (or use it as a context manager, which closes it). ``poll`` never returns a
    record twice within one started source; after a restart it resumes from the positions
    given to ``start`` (or, for partitions it has none for, from what the broker committed,
    else from the configured start: earliest or latest).
    """

    #: The stream's stable name for stored positions (``kafka:TOPIC``, ``redis:STREAM``):
    #: it names the topic/stream, not the broker address, so a consumer pointed at another
    #: address of the same cluster finds its positions.
    key: str
    #: The source as a URI for messages and records, without any password.
    display: str

    @abstractmethod
    def start(self, positions: Positions | None) -> None:
        """Connect and position the reader: after ``positions`` where given.

        Raises Unavailable when the broker cannot be reached, NotFound when the topic does
        not exist (Kafka; a Redis stream is created empty when missing).
        """

    @abstractmethod
    def poll(self, max_records: int, timeout: float) -> list[StreamRecord]:
        """Up to ``max_records`` records in partition order, waiting at most ``timeout``
        seconds for the first one (an empty list when none came)."""

    @abstractmethod
    def commit(self, positions: Positions) -> None:
        """Record ``positions`` at the broker (Kafka: the group's committed offsets; Redis:
        XACK of the entries delivered up to them). Synchronous; Unavailable on failure."""

    @abstractmethod
    def after(self, record: StreamRecord) -> Any:
        """The position of ``record``'s partition once ``record`` has been consumed."""

    @abstractmethod
    def covers(self, positions: Positions, record: StreamRecord) -> bool:
        """True when ``positions`` already include ``record`` (it was consumed before)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent); nothing is committed implicitly."""

    def advance(self, positions: Positions, records: list[StreamRecord]) -> Positions:
        """A copy of ``positions`` moved past ``records`` (never backwards)."""
        out = dict(positions)
        for record in records:
            if not self.covers(out, record):
                out[record.partition] = self.after(record)
        return out


class StreamSink(_Closing):
    """Where records are produced: a Kafka topic or a Redis stream.

    ``send`` queues records; ``flush`` returns only once every queued record is durable at
    the broker (Kafka: acknowledged by the partition leader with ``acks=all``; Redis: the
    XADDs executed) and raises Unavailable naming the problem otherwise. A caller that
    commits its input positions only after ``flush`` returns gets at-least-once delivery.
    """

    #: The sink as a URI for messages, without any password.
    display: str

    @abstractmethod
    def send(self, records: list[tuple[bytes | None, bytes]]) -> None:
        """Queue ``(key, value)`` records, in order (Kafka: the key picks the partition)."""

    @abstractmethod
    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is durable; Unavailable when some are not."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent); records not flushed may be lost."""


class KafkaConfig(BaseModel):
    """A Kafka topic to consume (``kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=G&start=...``).

    ``options`` are passed to librdkafka as they are (``security.protocol``,
    ``sasl.mechanism``, ...); ``username``/``password`` become ``sasl.username``/
    ``sasl.password``. ``start`` applies to partitions that have no position yet, neither
    given to :meth:`StreamSource.start` nor committed by the group.
    """

    bootstrap_servers: str
    topic: str
    group: str = "strata"
    start: Literal["earliest", "latest"] = "earliest"
    timeout_seconds: float = Field(10.0, gt=0, description="Metadata/commit/connect timeout.")
    username: str | None = None
    password: SecretStr | None = None
    options: dict[str, str] = Field(default_factory=dict)


class RedisStreamConfig(BaseModel):
    """A Redis stream to consume with a consumer group
    (``redis://[:PASSWORD@]HOST:PORT/DB?stream=NAME&group=G&consumer=C&field=F&start=...``).

    Each entry is one record: with ``field`` set (default ``data``), that field holds the
    record as JSON; with ``field=None`` the entry's own fields are the record (string values).
    ``url`` is the connection URL without the stream options (it may hold a password: it is
    never shown). ``start`` applies when neither the caller nor the group has a position.
    """

    url: SecretStr
    stream: str
    group: str = "strata"
    consumer: str = "strata"
    field: str | None = "data"
    start: Literal["earliest", "latest"] = "earliest"
    timeout_seconds: float = Field(10.0, gt=0, description="Connect/command timeout.")
