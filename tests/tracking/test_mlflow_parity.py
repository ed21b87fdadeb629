"""Strata's MLflow surface against a real ``mlflow server``, side by side (issue 17).

Every test here asks both servers the same thing, with the unmodified mlflow client or raw
REST, and expects the same answer: tie-broken paging, MLflow's error words and codes, the
user of a run nobody authenticated, relative artifact locations, and the default
experiment's lifecycle. The MLflow server runs once per module (SQLite backend, defaults).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer, free_port, start_server

from strata.core.config import Settings

pytest.importorskip("mlflow")


@dataclass
class Peer:
    """One server under test: its URL, the headers it needs and its working directory."""

    name: str
    url: str
    cwd: Path
    headers: dict[str, str] = field(default_factory=dict)

    def rest(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}/api/2.0/mlflow/{path}", headers=self.headers, timeout=30, **kw
        )

    def client(self) -> Any:
        """An mlflow client of this server for tracking and the registry alike (the registry
        URI is otherwise process-wide state another test may have set)."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)


def _mlflow_server(root: Path, artifacts: str, name: str = "mlflow") -> Iterator[Peer]:
    """``mlflow server`` (SQLite backend, defaults) in ``root``, its artifacts proxied to
    ``artifacts``; stopped after."""
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            artifacts,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError((root / "server.log").read_text()[-2000:])
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start within 180 s")
            time.sleep(0.25)
        yield Peer(name, url, root)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def mlflow_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    yield from _mlflow_server(root, str(root / "mlartifacts"))


@pytest.fixture(scope="module")
def mlflow_s3_peer(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Peer]:
    """``mlflow server`` whose artifacts go to S3 (moto): the store MLflow does multipart
    uploads on (its local store refuses them)."""
    from conftest import S3_BUCKET

    root = tmp_path_factory.mktemp("mlflow-s3-server")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_S3_ENDPOINT_URL", s3_endpoint)  # inherited by the server
        yield from _mlflow_server(root, f"s3://{S3_BUCKET}/mlflow-s3", "mlflow-s3")


@pytest.fixture
def no_auth_server(sqlite_settings: Settings) -> Iterator[LiveServer]:
    """On SQLite only: these tests are about the MLflow surface, and the mlflow side costs
    seconds; the backends are covered by the contract suites."""
    yield from start_server(sqlite_settings, auth=False)


@pytest.fixture
def strata_peer(no_auth_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Peer:
    """Strata with authentication off, as ``mlflow server`` runs by default."""
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    return Peer("strata", no_auth_server.url, Path.cwd())


@pytest.fixture
def peers(mlflow_peer: Peer, strata_peer: Peer) -> list[Peer]:
    return [mlflow_peer, strata_peer]


def both(peers: list[Peer], ask: Callable[[Peer], Any]) -> tuple[Any, Any]:
    ours, theirs = ask(peers[1]), ask(peers[0])
    return theirs, ours


# -- paging ----------------------------------------------------------------------------------
def test_paging_through_tied_runs_returns_each_run_once_in_mlflow_order(
    peers: list[Peer],
) -> None:
    """1,000 runs with the same start time, paged 37 at a time: each comes exactly once, in
    MLflow's tie-break order (run id ascending), on both servers."""

    def ask(peer: Peer) -> tuple[list[str], list[str], list[str]]:
        c = peer.client()
        exp = c.create_experiment(f"ties-{time.time_ns()}")
        with httpx.Client(base_url=f"{peer.url}/api/2.0/mlflow/", headers=peer.headers) as h:
            made = [
                h.post("runs/create", json={"experiment_id": exp, "start_time": 5}).json()["run"][
                    "info"
                ]["run_id"]
                for _ in range(1000)
            ]
        seen: list[str] = []
        token = None
        while True:
            page = c.search_runs([exp], max_results=37, page_token=token)
            seen += [r.info.run_id for r in page]
            token = page.token
            if not token:
                break
        by_start = [
            r.info.run_id
            for r in c.search_runs([exp], order_by=["attributes.start_time ASC"], max_results=1000)
        ]
        return made, seen, by_start

    for made, seen, by_start in both(peers, ask):
        assert len(seen) == 1000 and set(seen) == set(made)  # every run exactly once
        assert seen == sorted(made)  # the tie-break: run id ascending
        assert by_start == sorted(made)


def _pages(search: Callable[[str | None], Any]) -> list[Any]:
    """Every item of a paged search, following its tokens."""
    seen: list[Any] = []
    token = None
    while True:
        page = search(token)
        seen += list(page)
        token = page.token
        if not token:
            return seen


def test_paging_experiments_and_registered_models_in_mlflow_order(peers: list[Peer]) -> None:
    """40 experiments and 40 registered models made as fast as each server takes them (some
    share a millisecond), paged 7 at a time by time: each comes once, in MLflow's total
    order — ties broken by id descending for experiments (the newer first), by name for
    registered models. (With every key tied: ``test_tie_order.py``, Strata's clock frozen.)"""
    stamp = time.time_ns()

    def ask(peer: Peer) -> tuple[Any, ...]:
        c = peer.client()
        made = [c.create_experiment(f"tie-{stamp}-{i:02d}") for i in range(40)]
        for i in random.Random(7).sample(range(40), 40):  # not in name order
            c.create_registered_model(f"tie-{stamp}-{i:02d}")
        found = f"name LIKE 'tie-{stamp}-%'"
        by_created = _pages(
            lambda t: c.search_experiments(
                max_results=7, filter_string=found, order_by=["creation_time ASC"], page_token=t
            )
        )
        models = _pages(
            lambda t: c.search_registered_models(
                filter_string=found,
                max_results=7,
                order_by=["last_updated_timestamp DESC"],
                page_token=t,
            )
        )
        made_index = {e: i for i, e in enumerate(made)}
        experiments = [(e.creation_time, made_index[e.experiment_id]) for e in by_created]
        registered = [(m.last_updated_timestamp, m.name) for m in models]
        return experiments, registered

    for experiments, registered in both(peers, ask):
        assert sorted(i for _, i in experiments) == list(range(40))  # each exactly once
        assert experiments == sorted(experiments, key=lambda e: (e[0], -e[1]))
        assert len({n for _, n in registered}) == 40
        assert registered == sorted(registered, key=lambda m: (-m[0], m[1]))


def test_logged_models_order_by_metrics_and_filter_by_datasets(peers: list[Peer]) -> None:
    """``search_logged_models`` ordered by ``metrics.<key>`` (each model's latest point,
    optionally on one dataset; models without one last, ties newest first) and limited to
    ``datasets``, paged 2 at a time: the same models in the same order on both servers."""

    def ask(peer: Peer) -> list[list[str]]:
        c = peer.client()
        exp = c.create_experiment(f"lm-order-{time.time_ns()}")
        run = c.create_run(exp).info.run_id
        models = {}
        for name in ("m0", "m1", "m2", "m3", "m4", "m5"):
            models[name] = c.create_logged_model(exp, name=name, source_run_id=run).model_id
            time.sleep(0.01)  # distinct creation times: ties below are by metric only
        points = [  # model, value, dataset, timestamp
            ("m0", 0.5, "A", 1000),
            ("m1", 0.9, "A", 1000),
            ("m2", 0.7, "B", 1000),
            ("m3", 0.1, "A", 1000),
            ("m3", 0.95, "A", 2000),  # the latest point is m3's value
            ("m5", 0.5, "A", 1000),  # ties with m0
            ("m1", 0.2, "B", 3000),  # m1's latest overall; on A it stays 0.9
        ]
        for name, value, dataset, ts in points:
            c.log_metric(
                run,
                "acc",
                value,
                timestamp=ts,
                dataset_name=dataset,
                dataset_digest=f"d-{dataset}",
                model_id=models[name],
            )

        def names(**kw: Any) -> list[str]:
            found = _pages(
                lambda t: c.search_logged_models([exp], max_results=2, page_token=t, **kw)
            )
            return [m.name for m in found]

        acc = {"field_name": "metrics.acc"}
        return [
            names(order_by=[{**acc, "ascending": False}]),
            names(order_by=[{**acc, "ascending": True}]),
            names(order_by=[{**acc, "ascending": False, "dataset_name": "A"}]),
            names(order_by=[{"field_name": "name", "ascending": False}]),
            names(datasets=[{"dataset_name": "B", "dataset_digest": "d-B"}]),
            names(datasets=[{"dataset_name": "A", "dataset_digest": "d-A"}]),
            names(
                filter_string="metrics.acc > 0.6",
                datasets=[{"dataset_name": "A", "dataset_digest": "d-A"}],
            ),
            names(filter_string="metrics.acc < 0.3"),
        ]

    theirs, ours = both(peers, ask)
    for i, (want, got) in enumerate(zip(theirs, ours, strict=True)):
        assert got == want, i
    assert ours[0] == ["m3", "m2", "m5", "m0", "m1", "m4"]  # m1's latest is 0.2; m4 has none
    assert ours[4] == ["m2", "m1"]  # newest first


def test_a_dataset_named_without_a_digest_matches_any_digest(strata_peer: Peer) -> None:
    """Strata only: ``datasets=[{"dataset_name": "A"}]`` matches A's points whatever their
    digest. (MLflow 3.17's server compares the missing digest with NULL and so matches only
    points logged without one: not copied.)"""
    c = strata_peer.client()
    exp = c.create_experiment("lm-any-digest")
    run = c.create_run(exp).info.run_id
    a = c.create_logged_model(exp, name="a", source_run_id=run).model_id
    b = c.create_logged_model(exp, name="b", source_run_id=run).model_id
    c.log_metric(run, "acc", 0.5, dataset_name="A", dataset_digest="d1", model_id=a)
    c.log_metric(run, "acc", 0.5, dataset_name="B", dataset_digest="d1", model_id=b)
    found = c.search_logged_models([exp], datasets=[{"dataset_name": "A"}])
    assert [m.name for m in found] == ["a"]


# -- errors ----------------------------------------------------------------------------------
_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "runs/get", {"params": {}}),
    ("GET", "runs/get", {"params": {"run_id": "abcdef0123456789abcdef0123456789"}}),
    ("POST", "runs/log-metric", {"json": {"run_id": "RUN", "value": 1, "timestamp": 1}}),
    ("POST", "runs/log-metric", {"json": {"run_id": "RUN", "key": "a", "timestamp": 1}}),
    (
        "POST",
        "runs/log-metric",
        {"json": {"run_id": "RUN", "key": "a", "value": "x", "timestamp": 1}},
    ),
    (
        "POST",
        "runs/log-metric",
        {
            "json": {
                "run_id": "abcdef0123456789abcdef0123456789",
                "key": "a",
                "value": 1,
                "timestamp": 1,
            }
        },
    ),
    ("POST", "runs/log-batch", {"json": {"run_id": "RUN", "metrics": [{"key": "a", "value": 1}]}}),
    ("POST", "runs/log-parameter", {"json": {"run_id": "RUN", "key": "p", "value": "1"}}),
    ("POST", "runs/log-parameter", {"json": {"run_id": "RUN", "key": "p", "value": "2"}}),
    (
        "POST",
        "runs/log-batch",
        {
            "json": {
                "run_id": "RUN",
                "params": [{"key": "p", "value": "3"}, {"key": "q", "value": "4"}],
            }
        },
    ),
    ("POST", "experiments/create", {"json": {}}),
    ("POST", "experiments/create", {"json": {"name": 5}}),
    ("GET", "experiments/get", {"params": {"experiment_id": "999999"}}),
    ("GET", "experiments/get-by-name", {"params": {"experiment_name": "no-such-experiment"}}),
    ("POST", "experiments/delete", {"json": {"experiment_id": "999999"}}),
    ("POST", "runs/create", {"json": {"experiment_id": "999999"}}),
    ("POST", "runs/delete", {"json": {"run_id": "abcdef0123456789abcdef0123456789"}}),
    ("POST", "runs/search", {"json": {"experiment_ids": ["0"], "max_results": 0}}),
    ("POST", "runs/search", {"json": {"experiment_ids": ["0"], "max_results": 50001}}),
    ("POST", "experiments/search", {"json": {"max_results": 0}}),
    ("POST", "experiments/search", {"json": {"max_results": 50001}}),
    ("GET", "metrics/get-history", {"params": {"run_id": "RUN"}}),
]


def _fill(value: Any, run_id: str, deleted: str = "") -> Any:
    """``value`` with "RUN" replaced by ``run_id`` and "DEL" by ``deleted``."""
    if isinstance(value, dict):
        return {k: _fill(v, run_id, deleted) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, run_id, deleted) for v in value]
    return {"RUN": run_id, "DEL": deleted}.get(value, value) if isinstance(value, str) else value


def test_errors_use_mlflow_words_codes_and_statuses(peers: list[Peer]) -> None:
    def ask(peer: Peer) -> list[tuple[int, str, str, str, str]]:
        run_id = peer.rest("POST", "runs/create", json={"experiment_id": "0"}).json()["run"][
            "info"
        ]["run_id"]
        out = []
        for method, path, kw in _CASES:
            r = peer.rest(method, path, **_fill(kw, run_id))
            body = r.json()
            message = body.get("message", "").replace(run_id, "RUN")
            out.append(
                (
                    r.status_code,
                    body.get("error_code", ""),
                    message,
                    body.get("sqlstate", ""),
                    body.get("error_class", ""),
                )
            )
        return out

    theirs, ours = both(peers, ask)
    for case, want, got in zip(_CASES, theirs, ours, strict=True):
        assert got == want, f"{case[0]} {case[1]} {case[2]}"
    # The cases are errors where MLflow has words of its own (not a silent 200).
    assert sum(status >= 400 for status, *_ in theirs) == len(_CASES) - 1


_LONG = "v" * 6001
_MORE_CASES: list[tuple[str, str, dict[str, Any]]] = [
    # the issue's own example: a run id of the wrong type
    ("POST", "runs/log-metric", {"json": {"run_id": 31, "key": "a", "value": 1, "timestamp": 1}}),
    ("GET", "runs/get", {"params": {"run_id": ""}}),
    # a deleted run takes no more data
    (
        "POST",
        "runs/log-metric",
        {"json": {"run_id": "DEL", "key": "a", "value": 1, "timestamp": 1}},
    ),
    ("POST", "runs/log-parameter", {"json": {"run_id": "DEL", "key": "p", "value": "1"}}),
    ("POST", "runs/set-tag", {"json": {"run_id": "DEL", "key": "t", "value": "1"}}),
    ("POST", "runs/log-batch", {"json": {"run_id": "DEL", "tags": [{"key": "t", "value": "1"}]}}),
    # names and lengths
    (
        "POST",
        "runs/log-metric",
        {"json": {"run_id": "RUN", "key": "bad*key", "value": 1, "timestamp": 1}},
    ),
    ("POST", "runs/log-parameter", {"json": {"run_id": "RUN", "key": "../up", "value": "1"}}),
    ("POST", "runs/log-parameter", {"json": {"run_id": "RUN", "key": "long", "value": _LONG}}),
    ("POST", "runs/set-tag", {"json": {"run_id": "RUN", "key": "long", "value": "t" * 8001}}),
    ("POST", "runs/set-tag", {"json": {"run_id": "RUN", "key": "k" * 251, "value": "1"}}),
    # batch limits
    (
        "POST",
        "runs/log-batch",
        {
            "json": {
                "run_id": "RUN",
                "metrics": [
                    {"key": "m", "value": 1, "timestamp": 1, "step": i} for i in range(1001)
                ],
            }
        },
    ),
    (
        "POST",
        "runs/log-batch",
        {"json": {"run_id": "RUN", "params": [{"key": f"p{i}", "value": "1"} for i in range(101)]}},
    ),
    # names already taken
    ("POST", "experiments/create", {"json": {"name": "Default"}}),
    # metric histories
    (
        "GET",
        "metrics/get-history",
        {"params": {"run_id": "RUN", "metric_key": "a", "max_results": 0}},
    ),
    ("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", {"params": {"metric_key": "a"}}),
    ("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk", {"params": {"run_id": "RUN"}}),
    (
        "GET",
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
        {"params": {"run_id": [f"r{i}" for i in range(101)], "metric_key": "a"}},
    ),
    # artifact locations MLflow refuses
    *[
        ("POST", "experiments/create", {"json": {"name": f"loc-{i}", "artifact_location": loc}})
        for i, loc in enumerate(
            [
                "runs:/abcdef/model",
                "s3://bucket/x#fragment",
                "http://bucket/x;params",
                "s3://bucket/x?a=%252E%252E/b",
                "http://169.254.169.254/latest",
                "sftp://elsewhere/x",
                "mlflow-artifacts://elsewhere:5000/x",
                "s3://bucket/" + "x" * 2050,
            ]
        )
    ],
]


def test_more_errors_use_mlflow_words(peers: list[Peer]) -> None:
    """The rest of MLflow's set: a deleted run, names and lengths, batch limits, a taken
    name, orders, filters, page tokens and metric histories, worded as MLflow's server
    words them (status, code and message)."""

    def ask(peer: Peer) -> list[Any]:
        def new_run() -> str:
            r = peer.rest("POST", "runs/create", json={"experiment_id": "0"})
            return str(r.json()["run"]["info"]["run_id"])

        run_id, deleted = new_run(), new_run()
        peer.rest("POST", "runs/delete", json={"run_id": deleted})
        out = []
        for method, path, kw in _MORE_CASES:
            filled = _fill(kw, run_id, deleted)
            if path.startswith("/"):
                r = httpx.request(
                    method, f"{peer.url}{path}", headers=peer.headers, timeout=30, **filled
                )
            else:
                r = peer.rest(method, path, **filled)
            body = r.json()
            message = body.get("message", "").replace(run_id, "RUN").replace(deleted, "DEL")
            # MLflow appends its database's own error to a taken name: not part of its words
            out.append((r.status_code, body.get("error_code", ""), message.split(" Error: ")[0]))
        data = peer.rest("GET", "runs/get", params={"run_id": run_id}).json()["run"]["data"]
        # values over the limits are cut, not refused (MLFLOW_TRUNCATE_LONG_VALUES)
        out.append(
            [
                len(i["value"])
                for kind in ("params", "tags")
                for i in data[kind]
                if i["key"] == "long"
            ]
        )
        return out

    theirs, ours = both(peers, ask)
    differ = [
        f"{case[0]} {case[1]} {str(case[2])[:80]}:\n  mlflow {want}\n  strata {got}"
        for case, want, got in zip(_MORE_CASES, theirs, ours, strict=False)
        if got != want
    ]
    assert not differ, "\n".join(differ)
    assert ours[-1] == theirs[-1]  # what was stored of the long values
    assert ours[-1] == [6000, 8000]
    cut = {i for i, (_, _, kw) in enumerate(_MORE_CASES) if kw.get("json", {}).get("key") == "long"}
    statuses = [(case[1], answer[0]) for case, answer in zip(_MORE_CASES, theirs, strict=False)]
    unlike = [(i, c, s) for i, (c, s) in enumerate(statuses) if (s == 200) != (i in cut)]
    assert not unlike  # cut values are accepted (200), every other case is an error


# -- users -----------------------------------------------------------------------------------
_BAD_FILTERS = [
    "attributes.foo = 'x'",
    "foo.bar = 1",
    "metrics.acc = 'abc'",
    "params.lr > '0.1'",
    "params.lr = 0.1",
    "tags.t = 1",
    "metrics.acc LIKE 1",
    "start_time = 'x'",
    "Created < 'z'",
    "end_time LIKE '1'",
    "metrics.acc > 0.1 OR metrics.acc < 0",
    "metrics.acc >",
    "acc",
    "run_name = foo",
    "dataset.foo = 'x'",
    "datasets.name > 'x'",
    "datasets.context = 5",
    "metrics.acc IS NULL",
    "run_id IN ('a', 1)",
    "run_id IN ()",
    "metrics.a = 1; metrics.b = 2",
    "'x' = metrics.a",
    "(metrics.a > 1)",
    "metrics.acc == 1",
    "x.y.z = 1",
    "tags.x IS NULL and metrics.acc = 'a' and foo.bar = 1",
]
_BAD_ORDERS = [
    ["metrics.acc SIDEWAYS"],
    ["attributes.nonsense"],
    ["foo.bar"],
    ["metrics.acc DESC ASC"],
    ["timestamp"],
    ["datasets.name"],
]
_BAD_EXPERIMENT_FILTERS = [
    "foo = 'x'",
    "metrics.a > 1",
    "tags.t = 1",
    "creation_time = 'x'",
    "creation_time LIKE 1",
    "name = 'a' OR name = 'b'",
    "name",
    "name = x",
    "name = 'a'; name = 'b'",
    "(name = 'a')",
]
_BAD_EXPERIMENT_ORDERS = [["foo"], ["tags.x"], ["name SIDEWAYS"], ["metrics.a"], ["name DESC ASC"]]
# What MLflow's server refuses and Strata answers (its grammar is a superset on this surface:
# comparisons of text attributes, lists of params and statuses, its own attributes), and
# MLflow's aliases, which both answer.
_STRATA_ALSO_ANSWERS = [
    "status > 'x'",
    "params.p IN ('a')",
    "status IN ('A')",
    "lifecycle_stage = 'active'",
]
_STRATA_ALSO_ANSWERS_EXPERIMENTS = [
    "tags.t > 'a'",
    "name > 'a'",
    "name IN ('a')",
    "creation_time > 1.5",
    "name IS NULL",
]
_BOTH_ANSWER = ["`run name` = 'x'", "attributes.`Run Name` LIKE 'x%'", "Created > 0", "created < 1"]
# base64 that is not JSON, JSON without an offset, an offset that is no number; not base64
_BAD_TOKENS = ["garbage!", "abc", "eyJ4IjogMX0=", "bm90IGpzb24=", "eyJvZmZzZXQiOiAiYSJ9"]


def _sorted_sets(message: str) -> str:
    """MLflow prints its sets of keys with Python's set repr, in an order that changes with
    each server process: compared as sets."""
    return re.sub(
        r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message
    )


def test_refused_searches_use_mlflow_words(peers: list[Peer]) -> None:
    """A run search's filter, order and page token, refused as MLflow's server refuses them:
    what it refuses first, in its words (status, code, message); and the page tokens of
    experiment and registered-model searches."""

    def ask(peer: Peer) -> list[tuple[int, str, str]]:
        cases: list[tuple[str, dict[str, Any]]] = [
            *[("runs/search", {"experiment_ids": ["0"], "filter": f}) for f in _BAD_FILTERS],
            *[("runs/search", {"experiment_ids": ["0"], "order_by": o}) for o in _BAD_ORDERS],
            *[("runs/search", {"experiment_ids": ["0"], "page_token": t}) for t in _BAD_TOKENS],
            # the filter is refused first, then the order, then the comparators, then the token
            (
                "runs/search",
                {
                    "experiment_ids": ["0"],
                    "filter": "params.x > 'a'",
                    "order_by": ["nope"],
                    "page_token": "abc",
                },
            ),
            (
                "runs/search",
                {"experiment_ids": ["0"], "filter": "params.x > 'a'", "page_token": "abc"},
            ),
            *[("experiments/search", {"page_token": t, "max_results": 10}) for t in _BAD_TOKENS],
            *[
                ("experiments/search", {"filter": f, "max_results": 10})
                for f in _BAD_EXPERIMENT_FILTERS
            ],
            *[
                ("experiments/search", {"order_by": o, "max_results": 10})
                for o in _BAD_EXPERIMENT_ORDERS
            ],
            # its comparators are checked before its order, then the page token
            (
                "experiments/search",
                {
                    "filter": "name > 'a'",
                    "order_by": ["foo"],
                    "page_token": "abc",
                    "max_results": 1,
                },
            ),
            ("experiments/search", {"order_by": ["foo"], "page_token": "abc", "max_results": 1}),
        ]
        out = []
        for path, body in cases:
            r = peer.rest("POST", path, json=body)
            doc = r.json()
            out.append(
                (r.status_code, doc.get("error_code", ""), _sorted_sets(doc.get("message", "")))
            )
        for t in _BAD_TOKENS:
            query = {"page_token": t, "max_results": 10}
            r = peer.rest("GET", "registered-models/search", params=query)
            doc = r.json()
            out.append((r.status_code, doc.get("error_code", ""), doc.get("message", "")))
        return out

    theirs, ours = both(peers, ask)
    assert all(status == 400 for status, _, _ in theirs)
    differ = [
        f"mlflow {want}\n  strata {got}"
        for want, got in zip(theirs, ours, strict=True)
        if got != want
    ]
    assert not differ, "\n".join(differ)


def test_searches_mlflow_refuses_that_strata_answers(peers: list[Peer]) -> None:
    """The run and experiment filters on the MLflow surface are supersets of MLflow's: what
    its server refuses and Strata answers is listed here, and MLflow's own aliases (``run
    name``, ``Created``) are answered by both."""

    def ask(peer: Peer) -> list[int]:
        runs = [
            peer.rest("POST", "runs/search", json={"experiment_ids": ["0"], "filter": f})
            for f in [*_STRATA_ALSO_ANSWERS, *_BOTH_ANSWER]
        ]
        experiments = [
            peer.rest("POST", "experiments/search", json={"filter": f, "max_results": 10})
            for f in _STRATA_ALSO_ANSWERS_EXPERIMENTS
        ]
        return [r.status_code for r in [*runs, *experiments]]

    theirs, ours = both(peers, ask)
    extra = len(_STRATA_ALSO_ANSWERS)
    assert theirs == (
        [400] * extra + [200] * len(_BOTH_ANSWER) + [400] * len(_STRATA_ALSO_ANSWERS_EXPERIMENTS)
    )
    assert ours == [200] * len(theirs)


def test_run_without_user_gets_unknown_not_the_server_os_user(peers: list[Peer]) -> None:
    def ask(peer: Peer) -> tuple[str, str]:
        c = peer.client()
        unnamed = c.create_run("0").info.user_id  # the client sends no mlflow.user tag
        named = c.create_run("0", tags={"mlflow.user": "alice"}).info.user_id
        return unnamed, named

    theirs, ours = both(peers, ask)
    assert ours == theirs == ("unknown", "alice")


def test_claimed_user_is_honoured_only_for_admins(live_server: LiveServer) -> None:
    """With authentication on, a run belongs to its caller; an admin may name another user
    (importing history), an editor's claim is ignored."""
    editor = live_server.token_for("editor", "ed")

    def create(token: str, user: str) -> tuple[str, str]:
        """The run's user and its ``mlflow.user`` tag (what the MLflow UI shows)."""
        r = httpx.post(
            f"{live_server.url}/api/2.0/mlflow/runs/create",
            json={
                "experiment_id": "0",
                "user_id": user,
                "tags": [{"key": "mlflow.user", "value": user}],
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        r.raise_for_status()
        run = r.json()["run"]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        return run["info"]["user_id"], tags["mlflow.user"]

    assert create(editor, "mallory") == ("ed", "ed")
    assert create(live_server.admin_token, "imported-bob") == ("imported-bob", "imported-bob")
    # later, by set-tag or log-batch: an editor's claim is the editor again
    run = httpx.post(
        f"{live_server.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": "0"},
        headers={"Authorization": f"Bearer {editor}"},
        timeout=10,
    ).json()["run"]["info"]["run_id"]
    for route, body in (
        ("set-tag", {"run_id": run, "key": "mlflow.user", "value": "mallory"}),
        ("log-batch", {"run_id": run, "tags": [{"key": "mlflow.user", "value": "mallory"}]}),
    ):
        r = httpx.post(
            f"{live_server.url}/api/2.0/mlflow/runs/{route}",
            json=body,
            headers={"Authorization": f"Bearer {editor}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        got = httpx.get(
            f"{live_server.url}/api/2.0/mlflow/runs/get",
            params={"run_id": run},
            headers={"Authorization": f"Bearer {editor}"},
            timeout=10,
        ).json()["run"]["data"]["tags"]
        assert {t["key"]: t["value"] for t in got}["mlflow.user"] == "ed", route


# -- experiments -----------------------------------------------------------------------------
def test_relative_artifact_location_resolves_against_the_server_cwd(peers: list[Peer]) -> None:
    stamp = time.time_ns()

    def ask(peer: Peer) -> tuple[str, ...]:
        c = peer.client()
        locations = []
        for given in (
            f"rel/{stamp}",
            f"file:rel/{stamp}",
            f"/abs/{stamp}",
            f"s3://b/{stamp}",
            f"rel%20dir/{stamp}",
            f"file:rel%20dir/{stamp}",
            f"mlflow-artifacts:/x/{stamp}",
        ):
            exp = c.create_experiment(f"loc-{given}", artifact_location=given)
            got = c.get_experiment(exp).artifact_location
            locations.append(got.replace(peer.cwd.as_posix(), "CWD"))
        return tuple(locations)

    theirs, ours = both(peers, ask)
    assert ours == theirs
    assert ours[0].startswith("CWD/rel/") and ours[1].startswith("file://CWD/rel/")


def test_default_experiment_lifecycle_matches(peers: list[Peer]) -> None:
    def ask(peer: Peer) -> list[Any]:
        c = peer.client()
        out: list[Any] = []
        default = c.get_experiment("0")
        out.append((default.name, default.lifecycle_stage))
        run = c.create_run("0").info.run_id
        c.delete_experiment("0")
        out.append(c.get_experiment("0").lifecycle_stage)
        out.append(c.get_run(run).info.lifecycle_stage)
        out.append("0" in [e.experiment_id for e in c.search_experiments()])
        r = peer.rest("POST", "runs/create", json={"experiment_id": "0"})
        out.append((r.status_code, r.json().get("error_code")))
        c.restore_experiment("0")
        out.append(c.get_experiment("0").lifecycle_stage)
        out.append(c.get_run(run).info.lifecycle_stage)
        out.append(c.get_experiment_by_name("Default").experiment_id)
        return out

    theirs, ours = both(peers, ask)
    assert ours == theirs


# -- the MLflow UI's endpoints ---------------------------------------------------------------
def test_search_datasets_matches(peers: list[Peer]) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    def ask(peer: Peer) -> tuple[Any, ...]:
        c = peer.client()
        exp = c.create_experiment(f"datasets-{time.time_ns()}")
        train = DatasetInput(
            Dataset("flights", "d1", "local", "/data/f.parquet"),
            [InputTag("mlflow.data.context", "train")],
        )
        plain = DatasetInput(Dataset("weather", "d2", "local", "/data/w.parquet"), [])
        for _ in range(2):  # the same inputs twice: summaries are distinct
            run = c.create_run(exp).info.run_id
            c.log_inputs(run, [train, plain])

        def search(ids: list[str]) -> tuple[int, Any]:
            r = httpx.post(
                f"{peer.url}/ajax-api/2.0/mlflow/experiments/search-datasets",
                json={"experiment_ids": ids},
                headers=peer.headers,
                timeout=30,
            )
            return r.status_code, r.json()

        status, found = search([exp])
        summaries = sorted(
            (s["name"], s["digest"], s.get("context"), s["experiment_id"] == exp)
            for s in found["dataset_summaries"]
        )
        return status, summaries, search([]), search([str(i) for i in range(21)])

    theirs, ours = both(peers, ask)
    assert ours == theirs
    assert ours[1] == [("flights", "d1", "train", True), ("weather", "d2", None, True)]


def test_ui_upload_artifact_matches(peers: list[Peer]) -> None:
    def ask(peer: Peer) -> list[Any]:
        c = peer.client()
        run = c.create_run("0").info.run_id
        url = f"{peer.url}/ajax-api/2.0/mlflow/upload-artifact"

        def post(params: dict[str, str], data: bytes) -> tuple[int, Any]:
            r = httpx.post(url, params=params, content=data, headers=peer.headers, timeout=60)
            body = r.json() if r.content else {}
            return r.status_code, body.get("error_code"), body.get("message")

        out: list[Any] = [
            post({"run_uuid": run, "path": "notes/a.txt"}, b"hello"),
            post({"path": "x.txt"}, b"hello"),
            post({"run_uuid": run}, b"hello"),
            post({"run_uuid": run, "path": "empty.txt"}, b""),
            post({"run_uuid": run, "path": "big.bin"}, b"\0" * (10 * 1024 * 1024 + 1)),
            post({"run_uuid": run, "path": "../escape.txt"}, b"x")[0],
        ]
        out.append(sorted((f.path, f.file_size) for f in c.list_artifacts(run, "notes")))
        return out

    theirs, ours = both(peers, ask)
    assert ours == theirs
    assert ours[0][0] == 200 and ours[-1] == [("notes/a.txt", 5)]


def test_get_history_bulk_interval_matches(peers: list[Peer]) -> None:
    """The MLflow UI's chart endpoint: the same sampled steps, in the same order, and the same
    errors, from both servers."""
    from mlflow.entities import Metric

    def ask(peer: Peer) -> list[Any]:
        c = peer.client()
        exp = c.create_experiment(f"bulk-{time.time_ns()}")
        long_run = c.create_run(exp, start_time=1).info.run_id
        short_run = c.create_run(exp, start_time=2).info.run_id
        for first in range(0, 1000, 500):
            points = [Metric("loss", 1.0 / (s + 1), 1000 + s, s) for s in range(first, first + 500)]
            c.log_batch(long_run, metrics=points)
        c.log_batch(
            short_run, metrics=[Metric("loss", float(s), 5000 + s, s * 3) for s in range(50)]
        )
        names = {long_run: "LONG", short_run: "SHORT"}

        def get(params: list[tuple[str, str]]) -> tuple[int, Any]:
            r = httpx.get(
                f"{peer.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                params=params,
                headers=peer.headers,
                timeout=30,
            )
            body = r.json()
            for m in body.get("metrics", []):
                m["run_id"] = names.get(m["run_id"], m["run_id"])
            if "message" in body:
                for run_id, name in names.items():
                    body["message"] = body["message"].replace(run_id, name)
            return r.status_code, body

        both_runs = [("run_ids", long_run), ("run_ids", short_run), ("metric_key", "loss")]
        return [
            get([*both_runs, ("max_results", "10")]),
            get([*both_runs, ("max_results", "7"), ("start_step", "100"), ("end_step", "300")]),
            get([*both_runs]),
            get([*both_runs, ("start_step", "5")]),
            get([*both_runs, ("start_step", "9"), ("end_step", "3")]),
            get([*both_runs, ("max_results", "0")]),
            get([*both_runs, ("max_results", "2501")]),
            get([("metric_key", "loss")]),
            get([("run_ids", long_run)]),
            get([("run_ids", long_run), ("metric_key", "no-such-metric")]),
            get([*(("run_ids", f"{i:032x}") for i in range(101)), ("metric_key", "loss")]),
        ]

    theirs, ours = both(peers, ask)
    for i, (want, got) in enumerate(zip(theirs, ours, strict=True)):
        assert got == want, f"case {i}"


def _upload_with_the_client(
    peer: Peer, data: bytes, parts: list[int], tmp_path: Path
) -> tuple[Any, str, dict[str, str]]:
    """A new run's ``model/weights.bin`` (``data``) logged by the mlflow client and downloaded
    again: the client, the run id and the sha256 of each file downloaded (``parts`` is
    emptied first: it then holds the parts the client PUT)."""
    import hashlib

    c = peer.client()
    run = c.create_run("0").info.run_id
    local = tmp_path / peer.name / "weights.bin"
    local.parent.mkdir()
    local.write_bytes(data)
    parts.clear()
    c.log_artifact(run, str(local), "model")
    down = Path(c.download_artifacts(run, "model", str(tmp_path / peer.name / "down")))
    return c, run, {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in down.iterdir()}


def test_multipart_upload_matches(
    peers: list[Peer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD``: the same file arrives on both servers. MLflow's
    server with a local artifact store refuses multipart (the client falls back to one PUT);
    Strata takes the parts."""
    import hashlib

    from mlflow_multipart_helpers import CHUNK, enable_multipart

    parts = enable_multipart(monkeypatch)
    data = os.urandom(2 * CHUNK + 12345)

    def ask(peer: Peer) -> Any:
        c, run, got = _upload_with_the_client(peer, data, parts, tmp_path)
        listed = [(f.path, f.file_size) for f in c.list_artifacts(run, "model")]
        return sorted(parts), listed, got

    (their_parts, *theirs), (our_parts, *ours) = both(peers, ask)
    assert ours == theirs
    assert ours[1] == {"weights.bin": hashlib.sha256(data).hexdigest()}
    assert (their_parts, our_parts) == ([], [1, 2, 3])


def test_multipart_create_complete_abort_match_mlflow_on_s3(
    mlflow_s3_peer: Peer, strata_peer: Peer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Against ``mlflow server`` on S3, where it does multipart uploads: the client's
    multipart upload lands the same file in the same parts; ``mpu/create`` answers the same
    shape (an upload id, one presigned URL per part, numbered from 1); ``mpu/abort`` and
    ``mpu/complete`` answer the same, and a completed upload is the file."""
    import hashlib

    from mlflow_multipart_helpers import CHUNK, enable_multipart

    parts = enable_multipart(monkeypatch)
    data = os.urandom(2 * CHUNK + 12345)

    def ask(peer: Peer) -> Any:
        c, run, got = _upload_with_the_client(peer, data, parts, tmp_path)
        # the REST calls themselves, under the run's artifact root
        root = c.get_run(run).info.artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        base = f"{peer.url}/api/2.0/mlflow-artifacts/mpu"
        path = f"{root}/raw"  # <experiment>/<run>/artifacts/raw
        answers: list[Any] = []

        def call(verb: str, body: dict[str, Any]) -> httpx.Response:
            r = httpx.post(f"{base}/{verb}/{path}", json=body, timeout=30, headers=peer.headers)
            answers.append((verb, r.status_code, sorted(r.json())))
            return r

        made = call("create", {"path": "data.bin", "num_parts": 2}).json()
        answers.append([cred["part_number"] for cred in made["credentials"]])
        call("abort", {"path": "data.bin", "upload_id": made["upload_id"]})
        made = call("create", {"path": "data.bin", "num_parts": 2}).json()
        chunks = [data[:CHUNK], data[CHUNK : CHUNK + 100]]
        etags = []
        for cred, chunk in zip(made["credentials"], chunks, strict=True):
            put = httpx.put(cred["url"], content=chunk, headers=cred.get("headers") or {})
            assert put.status_code == 200, put.text
            etags.append({"part_number": cred["part_number"], "etag": put.headers["etag"]})
        call("complete", {"path": "data.bin", "upload_id": made["upload_id"], "parts": etags})
        fetched = Path(c.download_artifacts(run, "raw/data.bin", str(tmp_path / peer.name)))
        answers.append(hashlib.sha256(fetched.read_bytes()).hexdigest())
        return sorted(parts), got, answers

    theirs, ours = both([mlflow_s3_peer, strata_peer], ask)
    assert ours == theirs
    assert ours[0] == [1, 2, 3]  # both took the client's file in three parts
    assert ours[2][-1] == hashlib.sha256(data[: CHUNK + 100]).hexdigest()


GET_RUN = """
query MlflowGetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
  mlflowGetRun(input: $data) {
    apiError { code message }
    run {
      info { runName status lifecycleStage startTime }
      data { metrics { key value step } params { key value } tags { key value } }
      experiment { name lifecycleStage tags { key value } }
      inputs { datasetInputs { dataset { name digest sourceType } tags { key value } } }
      modelVersions { name version }
    }
  }
}"""
SEARCH_RUNS = """
mutation MlflowSearchRuns($data: MlflowSearchRunsInput) {
  mlflowSearchRuns(input: $data) {
    runs { info { runName status } data { metrics { key value } } }
    nextPageToken
  }
}"""
BULK = """
query GetMetricHistoryBulkInterval($data: MlflowGetMetricHistoryBulkIntervalInput!) {
  mlflowGetMetricHistoryBulkInterval(input: $data) { metrics { key value step } }
}"""
ARTIFACTS = """
query MlflowListArtifacts($data: MlflowListArtifactsInput) {
  mlflowListArtifacts(input: $data) { files { path isDir fileSize } }
}"""
DATASETS = """
mutation MlflowSearchDatasets($data: MlflowSearchDatasetsInput) {
  mlflowSearchDatasets(input: $data) { datasetSummaries { name digest context } }
}"""


def test_graphql_matches(peers: list[Peer], tmp_path: Path) -> None:
    """The MLflow UI's GraphQL operations: the same data and the same errors from both."""
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import Metric

    made: dict[str, str] = {}

    def ask(peer: Peer) -> list[Any]:
        import pandas as pd

        c = peer.client()
        exp = c.create_experiment(f"gql-{peer.name}-{time.time_ns()}", tags={"team": "ops"})
        run = made[peer.name] = c.create_run(exp, run_name="first").info.run_id
        c.create_run(exp, run_name="second")
        c.log_batch(run, metrics=[Metric("loss", 1.0 / (s + 1), 1000 + s, s) for s in range(40)])
        c.log_metric(run, "odd", float("nan"))
        c.log_param(run, "lr", "0.1")
        c.set_tag(run, "team", "ops")
        ds = from_pandas(pd.DataFrame({"a": [1, 2]}), source="flights.csv", name="flights")
        from mlflow.entities import DatasetInput, InputTag

        c.log_inputs(
            run, [DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", "train")])]
        )
        note = tmp_path / peer.name / "notes.txt"
        note.parent.mkdir()
        note.write_text("hello")
        c.log_artifact(run, str(note), "docs")
        c.set_terminated(run)

        def gql(query: str, data: Any) -> Any:
            r = httpx.post(
                f"{peer.url}/graphql",
                json={"query": query, "variables": {"data": data}},
                headers=peer.headers,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            return r.json()

        got = gql(GET_RUN, {"runId": run})
        data = got["data"]["mlflowGetRun"]["run"]
        data["info"]["startTime"] = isinstance(data["info"]["startTime"], str)
        data["data"]["tags"] = [t for t in data["data"]["tags"] if t["key"] == "team"]
        data["experiment"]["name"] = data["experiment"]["name"].startswith("gql-")
        searched = gql(SEARCH_RUNS, {"experimentIds": [exp], "orderBy": ["attributes.run_name"]})
        return [
            got["errors"],
            data,
            gql(GET_RUN, {"runId": "0" * 32})["errors"],
            searched,
            gql(BULK, {"runIds": [run], "metricKey": "loss"}),
            gql(ARTIFACTS, {"runId": run, "path": "docs"}),
            gql(DATASETS, {"experimentIds": [exp]}),
            gql("query { mlflowGetRun(input: {runId: 1}) { run { info { runId } } } }", None),
            gql(
                "{ "
                + " ".join(f'a{i}: test(inputString: "x") {{ output }}' for i in range(11))
                + " }",
                None,
            ),
            gql('{ test(inputString: "hi") { output } }', None),
        ]

    theirs, ours = both(peers, ask)
    for i, (t, o) in enumerate(zip(theirs, ours, strict=True)):
        assert o == t, f"answer {i} differs:\n mlflow {t}\n strata {o}"
    assert ours[1]["info"]["status"] == "FINISHED"
    assert len(ours[4]["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]) == 40

    # MLflow's GraphQL resolver reads maxResults and the step range from the URL's query
    # string, so through /graphql it ignores them; Strata honours them, as its REST route does.
    strata = peers[1]
    run_id = made["strata"]

    def bulk(data: dict[str, Any]) -> Any:
        data = {"runIds": [run_id], "metricKey": "loss", **data}
        body = {"query": BULK, "variables": {"data": data}}
        return httpx.post(f"{strata.url}/graphql", json=body, timeout=30).json()

    sampled = bulk({"maxResults": 7})["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"]
    assert [m["step"] for m in sampled] == ["0", "6", "12", "18", "24", "30", "39"]
    ranged = bulk({"startStep": 5, "endStep": 7})["data"]["mlflowGetMetricHistoryBulkInterval"]
    assert [m["step"] for m in ranged["metrics"]] == ["5", "6", "7"]
    assert bulk({"startStep": 5})["errors"] == [
        "If either start step or end step are specified, both must be specified."
    ]


def test_graphql_needs_read_permission(live_server: LiveServer) -> None:
    query = {"query": '{ test(inputString: "x") { output } }'}
    assert httpx.post(f"{live_server.url}/graphql", json=query).status_code == 401
    viewer = {"Authorization": f"Bearer {live_server.token_for('viewer')}"}
    r = httpx.post(f"{live_server.url}/graphql", json=query, headers=viewer)
    assert r.json() == {"data": {"test": {"output": "x"}}, "errors": None}
    got = httpx.get(
        f"{live_server.url}/graphql",
        params={
            "query": "query($s: String) { test(inputString: $s) { output } }",
            "variables": '{"s": "via GET"}',
        },
        headers=viewer,
    )
    assert got.json() == {"data": {"test": {"output": "via GET"}}, "errors": None}
    bad = httpx.post(f"{live_server.url}/graphql", json={"query": "{ nope"}, headers=viewer)
    assert bad.status_code == 200 and bad.json()["data"] is None and bad.json()["errors"]
