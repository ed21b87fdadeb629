"""Stream sources (Kafka, Redis Streams) behind one interface, chosen by URI scheme.

- ``kafka://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/TOPIC`` with optional query options
  ``group``, ``start`` (``earliest``/``latest``), ``timeout`` (seconds) and any librdkafka
  setting spelled with a dot (``security.protocol=SASL_SSL``...).
- ``redis://[[USER]:PASSWORD@]HOST:PORT[/DB]?stream=NAME`` (or ``rediss://``) with optional
  ``group``, ``consumer``, ``field`` (the entry field holding the JSON record; ``field=``
  empty: the entry's fields are the record), ``start``, ``timeout``; other query options go to
  the Redis client.

:func:`open_sink` produces to the same URIs (:class:`StreamSink`). The drivers are imported
only when a source or sink is opened; a missing one raises InvalidInput
naming the extra to install.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError

from strata.backends.streams.base import (
    KafkaConfig,
    Positions,
    RedisStreamConfig,
    StreamRecord,
    StreamSink,
    StreamSource,
)
from strata.core.config import redact_uri
from strata.core.errors import InvalidInput

__all__ = [
    "KafkaConfig",
    "Positions",
    "RedisStreamConfig",
    "StreamRecord",
    "StreamSink",
    "StreamSource",
    "open_sink",
    "open_source",
    "parse_stream_uri",
]

_KAFKA_OPTIONS = ("group", "start", "timeout")
_REDIS_OPTIONS = ("stream", "group", "consumer", "field", "start", "timeout")


def _bad(uri: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"Stream URI {redact_uri(uri)!r}: {problem}. Expected "
        "kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB?stream=NAME",
        details={"field": "uri", "value": redact_uri(uri)},
    )


def _common(uri: str, opts: dict[str, str], group: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "group" in opts or group:
        out["group"] = opts.get("group") or group
    if "start" in opts:
        if opts["start"] not in ("earliest", "latest"):
            raise _bad(uri, f"start must be earliest or latest, got {opts['start']!r}")
        out["start"] = opts["start"]
    if "timeout" in opts:
        try:
            out["timeout_seconds"] = float(opts["timeout"])
        except ValueError:
            raise _bad(uri, f"timeout must be a number of seconds, got {opts['timeout']!r}")
    return out


def parse_stream_uri(uri: str, *, group: str | None = None) -> KafkaConfig | RedisStreamConfig:
    """The typed config a stream URI describes (see the module doc); ``group`` is the default
    consumer group when the URI names none. InvalidInput names what is wrong."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    opts = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        if scheme == "kafka":
            hosts = parts.netloc.rpartition("@")[2]
            topic = parts.path.strip("/")
            if not hosts:
                raise _bad(uri, "no broker address (HOST:PORT) given")
            if not topic or "/" in topic:
                raise _bad(uri, "the path must be exactly one topic name")
            unknown = [k for k in opts if k not in _KAFKA_OPTIONS and "." not in k]
            if unknown:
                raise _bad(
                    uri,
                    f"unknown option {unknown[0]!r} (use {', '.join(_KAFKA_OPTIONS)} or a "
                    "librdkafka setting such as security.protocol)",
                )
            return KafkaConfig(
                bootstrap_servers=hosts,
                topic=topic,
                username=parts.username or None,
                password=SecretStr(parts.password) if parts.password else None,
                options={k: v for k, v in opts.items() if "." in k},
                **_common(uri, opts, group),
            )
        if scheme in ("redis", "rediss"):
            stream = opts.get("stream", "")
            if not stream:
                raise _bad(uri, "no stream named: add ?stream=NAME")
            if not parts.hostname:
                raise _bad(uri, "no server address (HOST:PORT) given")
            rest = [(k, v) for k, v in parse_qsl(parts.query) if k not in _REDIS_OPTIONS]
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
            extra: dict[str, Any] = {}
            if "consumer" in opts:
                extra["consumer"] = opts["consumer"]
            if "field" in opts:
                extra["field"] = opts["field"] or None
            return RedisStreamConfig(
                url=SecretStr(url), stream=stream, **extra, **_common(uri, opts, group)
            )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise _bad(uri, f"{where}: {first.get('msg')}") from None
    raise _bad(uri, f"unknown scheme {parts.scheme!r}")


def open_source(
    source: str | KafkaConfig | RedisStreamConfig, *, group: str | None = None
) -> StreamSource:
    """A (not yet started) source for a URI or config. InvalidInput when the URI is wrong or
    the driver is not installed."""
    config = parse_stream_uri(source, group=group) if isinstance(source, str) else source
    if isinstance(config, KafkaConfig):
        try:
            from strata.backends.streams.kafka import KafkaSource
        except ImportError:
            raise InvalidInput(
                "Kafka sources need confluent-kafka: pip install 'strata[kafka]'"
            ) from None
        return KafkaSource(config)
    try:
        from strata.backends.streams.redis import RedisStreamSource
    except ImportError:
        raise InvalidInput("Redis sources need redis: pip install 'strata[redis]'") from None
    return RedisStreamSource(config)


def open_sink(sink: str | KafkaConfig | RedisStreamConfig) -> StreamSink:
    """A sink producing to the topic or stream a URI names (the same URIs as sources; the
    consumer options are ignored, ``field`` names the Redis entry field, default ``data``).
    InvalidInput when the URI is wrong or the driver is not installed."""
    config = parse_stream_uri(sink) if isinstance(sink, str) else sink
    if isinstance(config, KafkaConfig):
        try:
            from strata.backends.streams.kafka import KafkaSink
        except ImportError:
            raise InvalidInput(
                "Kafka sinks need confluent-kafka: pip install 'strata[kafka]'"
            ) from None
        return KafkaSink(config)
    try:
        from strata.backends.streams.redis import RedisStreamSink
    except ImportError:
        raise InvalidInput("Redis sinks need redis: pip install 'strata[redis]'") from None
    return RedisStreamSink(config)
