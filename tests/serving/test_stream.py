"""`strata predict stream` / `score_stream` against the real brokers: the Tansu Kafka broker
(tests/brokers.py) and Redis Streams (STRATA_TEST_REDIS_URL). Every input gets one output
keyed by its id, with the prediction the model gives in process; records that cannot be
scored get an error output; a SIGKILL between producing the outputs and committing the input
(and after committing) loses nothing on restart — duplicates allowed, keyed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from brokers import create_topic, produce, start_tansu, xadd
from conftest import need_service
from registry_helpers import exactly
from scoring_helpers import FEATURES, flights, register_flights_model

import strata.models as sm
from strata.backends.streams import open_source
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput, NotFound
from strata.serving.stream import score_stream

TOTAL = 2000
BATCH = 200


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_tansu(tmp_path_factory.mktemp("tansu"))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    c = Client(settings=Settings(home=tmp_path_factory.mktemp("stream-home")))
    register_flights_model(c, "flights-delay")
    yield c
    c.close()


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    frame = flights(TOTAL, seed=11)
    out: list[dict[str, Any]] = frame[["id", *FEATURES]].to_dict("records")
    return out


def expected(client: Client, rows: list[dict[str, Any]]) -> dict[int, int]:
    model = sm.load("models:/flights-delay/1", tracking=client.tracking)
    preds = model.predict({f: np.array([r[f] for r in rows], dtype=float) for f in FEATURES})
    return {int(r["id"]): int(p) for r, p in zip(rows, preds, strict=True)}


@dataclass
class Streams:
    """An input and an output on one broker, and how to write and read them."""

    kind: str
    source: str
    sink: str
    address: str

    def write(self, values: list[bytes]) -> None:
        if self.kind == "kafka":
            produce(self.address, self.source.rsplit("/", 1)[1], values, 3)
        else:
            xadd(self.address, self.source.split("stream=")[1], values)

    def outputs(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (key, JSON) record in the output, read from the beginning."""
        if self.kind == "redis":
            import redis

            r = redis.Redis.from_url(self.address)
            entries = r.xrange(self.sink.split("stream=")[1])
            r.close()
            return [(f[b"key"].decode(), json.loads(f[b"data"])) for _, f in entries]
        out: list[tuple[str, dict[str, Any]]] = []
        with open_source(self.sink, group=f"reader-{uuid.uuid4().hex[:8]}") as src:
            src.start(None)
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < 3:
                got = src.poll(5000, 0.5)
                if got:
                    quiet_since = time.monotonic()
                out += [
                    (r.key.decode() if r.key else "", json.loads(r.value or b"{}")) for r in got
                ]
        return out


@pytest.fixture(params=["kafka", "redis"])
def streams(request: pytest.FixtureRequest) -> Iterator[Streams]:
    tag = uuid.uuid4().hex[:10]
    if request.param == "kafka":
        address: str = request.getfixturevalue("kafka")
        create_topic(address, f"in-{tag}", 3)
        create_topic(address, f"out-{tag}", 3)
        yield Streams("kafka", f"kafka://{address}/in-{tag}", f"kafka://{address}/out-{tag}",
                      address)  # fmt: skip
        return
    import redis

    url = need_service("STRATA_TEST_REDIS_URL", "Redis")
    yield Streams("redis", f"{url}?stream=in-{tag}", f"{url}?stream=out-{tag}", url)
    r = redis.Redis.from_url(url)
    r.delete(f"in-{tag}", f"out-{tag}")
    r.close()


def encode(rows: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r).encode() for r in rows]


def test_every_input_gets_a_keyed_output(
    client: Client, streams: Streams, rows: list[dict[str, Any]]
) -> None:
    good = rows[:500]
    bad = [b"not json", b"[1, 2]", json.dumps({"id": "x1", "dep_delay": "late"}).encode()]
    streams.write(encode(good) + bad)
    result = score_stream("flights-delay/1", streams.source,
                          streams.sink, client=client, batch_size=BATCH, idle_seconds=2,
                          proba=True)  # fmt: skip
    assert (result.records, result.predictions, result.errors) == (503, 500, 3)
    assert result.stopped == "idle" and result.group == "strata-predict-flights-delay"
    out = streams.outputs()
    assert len(out) == 503
    want = expected(client, good)
    scored = {doc["id"]: doc for key, doc in out if "prediction" in doc}
    assert all(key == str(doc["id"]) for key, doc in out if isinstance(doc["id"], int))
    assert {i: d["prediction"] for i, d in scored.items()} == want
    assert all(abs(sum(d["probabilities"].values()) - 1) < 1e-9 for d in scored.values())
    assert all(d["model"] == "flights-delay" and d["version"] == "1" for d in scored.values())
    errors = {key: doc["error"] for key, doc in out if "error" in doc}
    assert len(errors) == 3
    assert errors["x1"].startswith("a feature does not fit") or "dep_delay" in errors["x1"]
    assert any("invalid JSON" in e for e in errors.values())
    assert any("not a JSON object" in e for e in errors.values())
    # everything is committed: a second run finds nothing new
    again = score_stream("flights-delay/1", streams.source, streams.sink, client=client,
                         idle_seconds=1.5)  # fmt: skip
    assert again.records == 0 and len(streams.outputs()) == 503


def run_cli(
    client: Client, streams: Streams, fault: str | None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "STRATA_FAULT"}
    env["STRATA_HOME"] = str(client.settings.home)
    if fault:
        env["STRATA_FAULT"] = fault
    cmd = [sys.executable, "-m", "strata.cli.main", "predict", "stream", "flights-delay/1",
           "--from", streams.source, "--to", streams.sink, "--batch-size", str(BATCH),
           "--batch-seconds", "2", "--stop-when-idle", "3", "--json"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, env=env, timeout=300)


@pytest.mark.parametrize("fault", ["serving.stream.produced@3", "serving.stream.committed@2"])
def test_sigkill_mid_stream_loses_nothing(
    client: Client, streams: Streams, rows: list[dict[str, Any]], fault: str
) -> None:
    streams.write(encode(rows))
    killed = run_cli(client, streams, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    partial = streams.outputs()
    assert 0 < len(partial) < TOTAL
    done = run_cli(client, streams, None)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = json.loads(done.stdout)
    assert result["stopped"] == "idle" and result["errors"] == 0
    out = streams.outputs()
    ids = Counter(doc["id"] for _, doc in out)
    assert set(ids) == {r["id"] for r in rows}  # none lost
    repeated = sum(n - 1 for n in ids.values())
    if fault.startswith("serving.stream.produced"):
        assert repeated > 0  # the killed batch was produced, not committed: scored again
    assert len(out) == TOTAL + repeated
    want = expected(client, rows)
    assert all(doc["prediction"] == want[doc["id"]] for _, doc in out)
    assert all(key == str(doc["id"]) for key, doc in out)


def test_bad_uris_and_refs(client: Client, kafka: str) -> None:
    exactly(InvalidInput, score_stream, "flights-delay/1", "ftp://x/y", "kafka://h:1/t",
            client=client)  # fmt: skip
    exactly(InvalidInput, score_stream, "../x", f"kafka://{kafka}/t", f"kafka://{kafka}/t",
            client=client)  # fmt: skip
    exactly(NotFound, score_stream, "flights-delay/1", f"kafka://{kafka}/no-such-topic",
            f"kafka://{kafka}/t", client=client, idle_seconds=1)  # fmt: skip
    exactly(InvalidInput, score_stream, "flights-delay/1", f"kafka://{kafka}/t",
            f"kafka://{kafka}/t", client=client, batch_size=0)  # fmt: skip
