"""Kafka topics as a :class:`StreamSource` (confluent-kafka / librdkafka).

The consumer is *assigned* every partition of the topic (no group rebalancing): one consumer
reads the whole topic in order per partition, which is what appending to one dataset needs.
Offsets are never committed automatically (``enable.auto.commit=false``): :meth:`commit`
writes the group's committed offsets synchronously, after the caller made the data durable.
On :meth:`start`, a partition is positioned at the caller's offset when it has one, else at
the group's committed offset, else at the earliest/latest offset (``start``).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from strata.backends.streams.base import (
    KafkaConfig,
    Positions,
    StreamRecord,
    StreamSink,
    StreamSource,
)
from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, NotFound, Unavailable


class KafkaSource(StreamSource):
    """Reads ``config.topic``; positions are ``{"<partition>": <next offset>}``."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.key = f"kafka:{config.topic}"
        self.display = redact_uri(f"kafka://{config.bootstrap_servers}/{config.topic}")
        self._consumer: Consumer | None = None
        self.partitions: list[int] = []

    def _settings(self) -> dict[str, Any]:
        c = self.config
        timeout_ms = int(c.timeout_seconds * 1000)
        settings: dict[str, Any] = {
            "bootstrap.servers": c.bootstrap_servers,
            "group.id": c.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": c.start,
            "enable.partition.eof": False,
            "socket.connection.setup.timeout.ms": max(timeout_ms, 1000),
            "log.connection.close": False,
        }
        if c.username is not None:
            settings["sasl.username"] = c.username
        if c.password is not None:
            settings["sasl.password"] = c.password.get_secret_value()
        settings.update(c.options)
        return settings

    def _unavailable(self, what: str, exc: BaseException) -> Unavailable:
        return Unavailable(
            f"Kafka at {self.display}: {what} failed: {redact_uri(str(exc))}; check that the "
            "broker is running and reachable from here",
            details={"source": self.display},
        )

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise InvalidInput(
                f"Kafka source {self.display} is not started: call start() first",
                details={"source": self.display},
            )
        return self._consumer

    def start(self, positions: Positions | None) -> None:
        if self._consumer is not None:
            raise InvalidInput(
                f"Kafka source {self.display} is started already", details={"source": self.display}
            )
        try:
            consumer = Consumer(self._settings())
        except KafkaException as exc:
            raise InvalidInput(
                f"Kafka source {self.display}: invalid client settings: {exc}",
                details={"source": self.display},
            ) from None
        try:
            meta = consumer.list_topics(self.config.topic, timeout=self.config.timeout_seconds)
        except KafkaException as exc:
            consumer.close()
            raise self._unavailable("reading the topic's metadata", exc) from None
        topic = meta.topics.get(self.config.topic)
        err = topic.error if topic is not None else None
        if topic is None or not topic.partitions or err is not None:
            consumer.close()
            if err is not None and err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise self._unavailable("reading the topic's metadata", KafkaException(err))
            raise NotFound(
                f"Kafka topic {self.config.topic!r} does not exist at {self.display}; create it "
                "(or enable topic auto-creation on the broker) and retry",
                details={"topic": self.config.topic, "source": self.display},
            )
        self.partitions = sorted(topic.partitions)
        given = positions or {}
        assignment = []
        for p in self.partitions:
            offset = given.get(str(p))
            assignment.append(
                TopicPartition(
                    self.config.topic, p, int(offset) if offset is not None else OFFSET_STORED
                )
            )
        try:
            consumer.assign(assignment)
        except KafkaException as exc:
            consumer.close()
            raise self._unavailable("assigning the topic's partitions", exc) from None
        self._consumer = consumer

    def poll(self, max_records: int, timeout: float) -> list[StreamRecord]:
        if max_records <= 0:
            return []
        try:
            messages = self.consumer.consume(num_messages=max_records, timeout=max(timeout, 0))
        except KafkaException as exc:
            raise self._unavailable("consuming", exc) from None
        out: list[StreamRecord] = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise self._unavailable(f"consuming partition {m.partition()}", KafkaException(err))
            partition, offset = m.partition(), m.offset()
            assert partition is not None and offset is not None
            kind, ts = m.timestamp()
            out.append(
                StreamRecord(
                    partition=str(partition),
                    offset=offset,
                    value=m.value(),
                    key=m.key(),
                    timestamp_ms=ts if kind != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
                )
            )
        return out

    def commit(self, positions: Positions) -> None:
        offsets = [
            TopicPartition(self.config.topic, int(p), int(o))
            for p, o in sorted(positions.items())
            if int(p) in self.partitions
        ]
        if not offsets:
            return
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise self._unavailable("committing offsets", exc) from None
        for tp in result or []:
            if tp.error is not None:
                raise self._unavailable(
                    f"committing partition {tp.partition}", KafkaException(tp.error)
                )

    def committed(self) -> Positions:
        """The group's committed offsets (``{"<partition>": offset}``; none: left out)."""
        tps = [TopicPartition(self.config.topic, p) for p in self.partitions]
        try:
            got = self.consumer.committed(tps, timeout=self.config.timeout_seconds)
        except KafkaException as exc:
            raise self._unavailable("reading committed offsets", exc) from None
        return {str(tp.partition): tp.offset for tp in got if tp.offset >= 0}

    def after(self, record: StreamRecord) -> Any:
        assert isinstance(record.offset, int)
        return record.offset + 1

    def covers(self, positions: Positions, record: StreamRecord) -> bool:
        assert isinstance(record.offset, int)
        stored = positions.get(record.partition)
        return stored is not None and record.offset < int(stored)

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()


class KafkaSink(StreamSink):
    """Produces to ``config.topic`` (``acks=all``); ``flush`` checks every delivery report."""

    def __init__(self, config: KafkaConfig) -> None:
        from confluent_kafka import Producer

        self.config = config
        self.display = redact_uri(f"kafka://{config.bootstrap_servers}/{config.topic}")
        timeout_ms = int(config.timeout_seconds * 1000)
        settings: dict[str, Any] = {
            "bootstrap.servers": config.bootstrap_servers,
            "acks": "all",
            # A retried send after a lost acknowledgement is not written twice, and a
            # partition's records keep their order across retries.
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": max(timeout_ms * 3, 5000),
            "socket.connection.setup.timeout.ms": max(timeout_ms, 1000),
            "log.connection.close": False,
        }
        if config.username is not None:
            settings["sasl.username"] = config.username
        if config.password is not None:
            settings["sasl.password"] = config.password.get_secret_value()
        settings.update(config.options)
        try:
            self._producer: Any = Producer(settings)
        except KafkaException as exc:
            raise InvalidInput(
                f"Kafka sink {self.display}: invalid client settings: {exc}",
                details={"sink": self.display},
            ) from None
        self._failed: list[str] = []

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed.append(str(err))

    def send(self, records: list[tuple[bytes | None, bytes]]) -> None:
        if self._producer is None:
            raise InvalidInput(
                f"Kafka sink {self.display} is closed", details={"sink": self.display}
            )
        for key, value in records:
            while True:
                try:
                    self._producer.produce(self.config.topic, value, key, on_delivery=self._report)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    self._producer.poll(0.1)
                except KafkaException as exc:
                    raise Unavailable(
                        f"Kafka at {self.display}: producing failed: {redact_uri(str(exc))}",
                        details={"sink": self.display},
                    ) from None
        self._producer.poll(0)

    def flush(self, timeout: float | None = None) -> None:
        left = self._producer.flush(
            timeout if timeout is not None else self.config.timeout_seconds * 3
        )
        failed, self._failed = self._failed, []
        if left or failed:
            what = f"{left} record(s) not delivered in time" if left else failed[0]
            raise Unavailable(
                f"Kafka at {self.display}: {what}; check that the broker is running and the "
                "topic exists",
                details={"sink": self.display, "undelivered": left, "failed": len(failed)},
            )

    def close(self) -> None:
        self._producer = None
