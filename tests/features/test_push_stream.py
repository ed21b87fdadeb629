"""Pushing a stream into the online store, against the real Tansu Kafka broker and the real
Redis: values arrive, bad records are counted and skipped, a second run resumes after the
committed positions, and a replayed record never replaces a newer value."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from brokers import create_topic, produce, start_tansu, xadd
from conftest import need_service
from typer.testing import CliRunner

from strata.cli.main import app
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput
from strata.features.models import OnlineStatus

from .conftest import FLIGHT_DEFS, planes, weather

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_tansu(tmp_path_factory.mktemp("tansu"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client("", settings=Settings(home=tmp_path / "home")) as c:
        c.data.ingest(weather, "weather")
        c.data.ingest(planes, "planes")
        c.features.apply(FLIGHT_DEFS)
        yield c


def reading(origin: str, minutes: int, temp: float) -> bytes:
    ts = (NOW - timedelta(minutes=minutes)).isoformat()
    return json.dumps({"origin": origin, "time_hour": ts, "temp": temp}).encode()


def temps(client: Client) -> dict[str, float | None]:
    got = client.features.get_online_features(
        ["weather:temp"], [{"origin": o} for o in ("EWR", "JFK", "LGA")]
    )
    col = got.columns["weather:temp"]
    assert set(col.status) <= {OnlineStatus.PRESENT, OnlineStatus.MISSING}
    return dict(zip(("EWR", "JFK", "LGA"), col.values, strict=True))


def test_kafka_push_resume_and_bad_records(client: Client, kafka: str) -> None:
    topic = f"weather-{uuid.uuid4().hex[:8]}"
    create_topic(kafka, topic, 2)
    produce(
        kafka,
        topic,
        [
            reading("EWR", 30, 50.0),
            reading("JFK", 30, 60.0),
            b"not json",
            json.dumps({"origin": "LGA", "time_hour": NOW.isoformat(), "temp": "warm"}).encode(),
            reading("EWR", 10, 51.0),
        ],
        2,
    )
    fs = client.features
    seen: list[int] = []
    first = fs.consume_push(
        "weather",
        f"kafka://{kafka}/{topic}",
        batch_size=2,
        idle_seconds=3,
        progress=lambda r: seen.append(r.records),
    )
    assert first.records == 5 and first.pushed == 3 and first.rejected == 2
    assert first.stopped == "idle" and seen == sorted(seen) and seen[-1] == 5
    assert any("not JSON" in e for e in first.errors)
    assert any("'temp' expects float64" in e for e in first.errors)
    assert temps(client) == {"EWR": 51.0, "JFK": 60.0, "LGA": None}

    # a second run starts after the committed positions: only the new records, and an
    # older reading (a replay, a late event) never replaces the newer value
    produce(kafka, topic, [reading("EWR", 20, 1.0), reading("LGA", 5, 70.0)], 2)
    second = fs.consume_push("weather", f"kafka://{kafka}/{topic}", idle_seconds=3)
    assert second.records == 2 and second.pushed == 2 and second.rejected == 0
    assert temps(client) == {"EWR": 51.0, "JFK": 60.0, "LGA": 70.0}


def test_redis_stream_push_and_cli(client: Client, tmp_path: Path) -> None:
    import redis

    url = need_service("STRATA_TEST_REDIS_URL", "Redis")
    stream = f"strata-features-{uuid.uuid4().hex[:8]}"
    try:
        xadd(url, stream, [reading("JFK", 1, 42.5), reading("LGA", 1, 43.5)])
        runner = CliRunner()
        result = runner.invoke(
            app,
            [
                "features",
                "push-stream",
                "weather",
                "--from",
                f"{url}?stream={stream}",
                "--max-records",
                "2",
                "--json",
            ],
            env={"STRATA_HOME": str(tmp_path / "home")},
        )
        assert result.exit_code == 0, (result.output, result.exception)
        out = json.loads(result.stdout)
        assert out["pushed"] == 2 and out["stopped"] == "max_records"
        assert temps(client) == {"EWR": None, "JFK": 42.5, "LGA": 43.5}
    finally:
        redis.Redis.from_url(url).delete(stream)


def test_remote_client_refuses_and_unknown_view(client: Client) -> None:
    with pytest.raises(Exception) as info:
        client.features.consume_push("nope", "kafka://127.0.0.1:1/t", idle_seconds=0.1)
    assert "nope" in str(info.value)
    from strata.features.remote import RemoteFeatures
    from strata.features.service import FeaturesService

    assert RemoteFeatures.consume_push is FeaturesService.consume_push
    with pytest.raises(InvalidInput) as refused:
        FeaturesService.consume_push(client.features, "weather", "kafka://h:1/t")
    assert "embedded client" in refused.value.message
