"""SIGKILL at chosen moments of a stream consumer, then a restart: every record exactly once.

The kills are deterministic: ``STRATA_FAULT`` (:mod:`strata.core.faults`) makes the consumer
process send itself SIGKILL when it reaches a named point — inside the version's database
transaction, between the database commit and the broker commit, in the middle of a
compaction (reading, and inside its own transaction) — or makes the broker commit fail.
Each scenario runs against the real brokers: Tansu (Kafka) with SQLite metadata, and Redis
Streams with PostgreSQL metadata. After the kill the test checks what the crash left (which
versions exist, where the database and the broker stand), restarts the consumer without
faults, and checks the dataset holds exactly the source's rows, none twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from brokers import create_topic, produce, xadd

from strata.backends.streams import Positions, open_source
from strata.backends.streams.kafka import KafkaSource
from strata.core.errors import NotFound
from strata.data.embedded import EmbeddedData

TOTAL = 1500  # 10 batches of 150
BATCH = 150


def records(n: int) -> list[bytes]:
    return [json.dumps({"id": i, "v": i * 0.5, "s": f"r{i}"}).encode() for i in range(n)]


@dataclass
class Broker:
    """One stream with its records produced, and what its broker has committed."""

    kind: str
    uri: str
    key: str
    group: str
    address: str

    def positions(self) -> Positions:
        """Kafka: the group's committed offsets. Redis: {stream: last acknowledged id}, read as
        the last entry delivered to the group and no longer pending."""
        if self.kind == "kafka":
            with open_source(self.uri, group=self.group) as src:
                assert isinstance(src, KafkaSource)
                src.start(None)
                return src.committed()
        import redis

        stream = self.key.split(":", 1)[1]
        client = redis.Redis.from_url(self.address)
        try:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
            if self.group not in groups:
                return {}
            pending = client.xpending(stream, self.group)
            if pending["pending"]:
                first = pending["min"].decode()
                acked = client.xrevrange(stream, max=f"({first}", count=1)
                return {stream: acked[0][0].decode()} if acked else {}
            last = groups[self.group]["last-delivered-id"].decode()
            return {} if last == "0-0" else {stream: last}
        finally:
            client.close()


@pytest.fixture(params=["kafka", "redis"])
def setup(request: pytest.FixtureRequest) -> tuple[EmbeddedData, Broker]:
    """(data service, broker): Kafka with SQLite metadata, Redis with PostgreSQL metadata
    (a kill on PostgreSQL also drops a connection in the middle of its transaction)."""
    name = "events"
    if request.param == "kafka":
        data: EmbeddedData = request.getfixturevalue("lite")
        address: str = request.getfixturevalue("kafka")
        topic = f"t-{uuid.uuid4().hex[:10]}"
        create_topic(address, topic, 3)
        produce(address, topic, list(records(TOTAL)), 3)
        broker = Broker("kafka", f"kafka://{address}/{topic}", f"kafka:{topic}", name, address)
    else:
        data = request.getfixturevalue("pg_data")
        url, stream = request.getfixturevalue("stream")
        xadd(url, stream, records(TOTAL))
        broker = Broker("redis", f"{url}?stream={stream}", f"redis:{stream}", name, url)
    broker.group = f"strata.{name}"
    return data, broker


def run(
    data: EmbeddedData, broker: Broker, fault: str | None, *extra: str
) -> tuple[int, dict[str, Any] | None]:
    """Run ``strata data consume`` to its end (or its kill): (return code, its JSON or None)."""
    settings = data.backends.settings
    env = os.environ | {
        "STRATA_HOME": str(settings.home),
        "STRATA_DB_URI": settings.db_uri,
        "STRATA_ARTIFACT_URI": settings.artifact_uri,
    }
    env.pop("STRATA_FAULT", None)
    if fault is not None:
        env["STRATA_FAULT"] = fault
    args = ["--name", "events", "--batch-size", str(BATCH), "--batch-seconds", "2", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "strata.cli.main", "data", "consume", broker.uri, *args, *extra],
        capture_output=True,
        env=env,
        timeout=120,
    )
    if proc.returncode == 0:
        return 0, json.loads(proc.stdout)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]
    return proc.returncode, None


def killed(data: EmbeddedData, broker: Broker, fault: str, *extra: str) -> None:
    code, _ = run(data, broker, fault, *extra)
    assert code == -signal.SIGKILL, f"the consumer was not killed at {fault}"


def versions(data: EmbeddedData) -> list[Any]:
    try:
        return data.list_versions("events")
    except NotFound:
        return []


def stored(data: EmbeddedData, broker: Broker) -> Positions:
    try:
        pos = data.stream_position("events", broker.key)
    except NotFound:
        return {}
    return dict(pos.offsets) if pos is not None else {}


def resume_exactly_once(data: EmbeddedData, broker: Broker, *extra: str) -> dict[str, Any]:
    """Restart without faults until idle; the dataset holds each source record exactly once
    and the broker has caught up with the database."""
    before = stored(data, broker)
    code, result = run(data, broker, None, "--stop-when-idle", "1.5", *extra)
    assert code == 0 and result is not None
    assert result["resumed_from"] == before and result["stopped"] == "idle"
    ids = data.read_arrow("events", columns=["id"]).column("id").to_pylist()
    assert len(ids) == TOTAL, f"{len(ids) - len(set(ids))} duplicates, {TOTAL - len(set(ids))} lost"
    assert sorted(ids) == list(range(TOTAL))
    latest = data.get_version("events")
    assert latest.rows == TOTAL and latest.quarantined_rows == 0
    assert stored(data, broker) == result["offsets"] == broker.positions()
    return result


# -- the scenarios ----------------------------------------------------------------------------
@pytest.mark.parametrize("nth", [1, 3])
def test_kill_inside_the_version_transaction(setup: tuple[EmbeddedData, Broker], nth: int) -> None:
    """Killed with every row of batch ``nth`` written but not committed: the batch is not
    there, neither are its positions; the broker is where the last committed batch left it."""
    data, broker = setup
    killed(data, broker, f"data.publish.transaction@{nth}")
    assert len(versions(data)) == nth - 1
    before = stored(data, broker)
    assert (before == {}) == (nth == 1)
    if nth > 1:
        assert data.get_version("events").rows == (nth - 1) * BATCH
    assert broker.positions() == before
    resume_exactly_once(data, broker)


@pytest.mark.parametrize("nth", [1, 3])
def test_kill_between_the_database_and_the_broker_commit(
    setup: tuple[EmbeddedData, Broker], nth: int
) -> None:
    """Killed with batch ``nth`` durable in the database, its positions not yet committed at
    the broker: the restart must start from the database's positions, not the broker's."""
    data, broker = setup
    killed(data, broker, f"data.stream.committed@{nth}")
    assert len(versions(data)) == nth and data.get_version("events").rows == nth * BATCH
    at_broker, in_db = broker.positions(), stored(data, broker)
    assert at_broker != in_db  # the broker is one batch behind
    assert (at_broker == {}) == (nth == 1)
    resume_exactly_once(data, broker)


@pytest.mark.parametrize("fault", ["data.stream.compaction", "data.publish.transaction@5"])
def test_kill_during_compaction(setup: tuple[EmbeddedData, Broker], fault: str) -> None:
    """With ``--compact-after 3`` the 4th batch's version (4 parts) is rewritten right after
    it is stored: killed while reading it, or inside the rewrite's own transaction (the 5th
    publish). The 4 batches are there, uncompacted; the rewrite left no version."""
    data, broker = setup
    killed(data, broker, fault, "--compact-after", "3")
    latest = data.get_version("events")
    assert len(versions(data)) == 4 and latest.num_files == 4 and latest.rows == 4 * BATCH
    assert "compacted_from" not in latest.source
    result = resume_exactly_once(data, broker, "--compact-after", "3")
    assert result["compactions"] >= 1
    assert data.get_version("events").num_files <= 4


def test_failed_broker_commits_are_counted_and_lose_nothing(
    setup: tuple[EmbeddedData, Broker],
) -> None:
    """The broker refuses commits from the 2nd on: the consumer goes on (the database holds
    the positions) and counts them. Then a kill between the database and the broker commit,
    with the broker behind the database; the restart still stores each record once."""
    data, broker = setup
    code, result = run(data, broker, "data.stream.source_commit@2:fail", "--max-batches", "3")
    assert code == 0 and result is not None
    assert (result["batches"], result["rows"]) == (3, 3 * BATCH)
    assert result["source_commit_failures"] == 2
    first = versions(data)[0].source["offsets"]
    assert broker.positions() == first != stored(data, broker)
    killed(data, broker, "data.stream.committed")
    assert data.get_version("events").rows == 4 * BATCH
    behind = broker.positions()
    assert behind != stored(data, broker)
    if broker.kind == "kafka":  # Redis acknowledged up to the DB's positions on start
        assert behind == first
    resume_exactly_once(data, broker)
