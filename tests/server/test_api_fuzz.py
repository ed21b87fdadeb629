"""Property-based fuzzing of the whole REST API from its OpenAPI document (schemathesis).

Every operation of every layer gets generated requests, authenticated as an admin, on SQLite
and on PostgreSQL; none may answer with a 5xx. The app is seeded with an experiment, a run
and a logged model, and the document the fuzzer reads pins the identifiers (``run_id``,
``experiment_id``, ``model_id``...) to those, so generated requests reach the handlers
instead of stopping at "not found". How many operations answered 2xx at least once is
printed and held to a floor (bounded: a few dozen examples per operation, in-process).
"""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from strata.client import Client
from strata.core.config import Settings
from strata.governance.embedded import EmbeddedGovernance
from strata.server.app import create_app

TOKEN = "strata_" + "f" * 40
EXAMPLES = 25
#: Operations that must answer 2xx at least once, per backend (measured 2026-12: see output).
MIN_2XX = 60
PG_BASE = os.environ.get("STRATA_TEST_POSTGRES_URL", "")


def _pin(node: Any, ids: dict[str, list[str]]) -> None:
    """Pin every property or parameter named like a seeded id to the seeded values."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in list(props.items()):
                if name in ids:
                    props[name] = {"type": "string", "enum": ids[name]}
                elif (
                    name.rstrip("s") in ids and isinstance(sub, dict) and sub.get("type") == "array"
                ):
                    props[name] = {
                        "type": "array",
                        "items": {"type": "string", "enum": ids[name.rstrip("s")]},
                    }
        if node.get("in") in ("path", "query") and node.get("name") in ids:
            node["schema"] = {"type": "string", "enum": ids[node["name"]]}
        for value in node.values():
            _pin(value, ids)
    elif isinstance(node, list):
        for value in node:
            _pin(value, ids)


def _app(root: Path, db_uri: str | None) -> Any:
    s = Settings(home=root / "home", **({"db_uri": db_uri} if db_uri else {}))
    client = Client("", settings=s)
    EmbeddedGovernance(client.backends).bootstrap_admin(secret=TOKEN)
    tracking = client.tracking
    exp = tracking.create_experiment(f"fuzz-{uuid.uuid4().hex[:6]}").experiment_id
    run = tracking.create_run(exp)
    tracking.log_metric(run.info.run_id, "loss", 0.5)
    tracking.log_param(run.info.run_id, "lr", "0.1")
    ids = {
        "run_id": [run.info.run_id],
        "run_uuid": [run.info.run_id],
        "experiment_id": [exp],
        "metric_key": ["loss"],
    }
    app = create_app(s, client=client, auth=True)
    _pin(app.openapi(), ids)  # FastAPI caches the document: the fuzzer reads this one
    return app


def _pg_url() -> str | None:
    if not PG_BASE:
        return None
    schema = f"t_fuzz_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in PG_BASE else "?"
    return f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"


def _drop_pg_schema() -> None:
    if PG_URL:
        engine = sa.create_engine(PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{PG_URL.rsplit("%3D", 1)[1]}" CASCADE'))
        engine.dispose()


PG_URL = _pg_url()
atexit.register(_drop_pg_schema)  # every xdist worker imports (and seeds) this module
# Built at import: schemathesis parametrizes from the schema at collection time.
sqlite_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", _app(Path(tempfile.mkdtemp(prefix="strata-fuzz-")), None)
)
pg_schema = (
    schemathesis.openapi.from_asgi(
        "/openapi.json", _app(Path(tempfile.mkdtemp(prefix="strata-fuzz-pg-")), PG_URL)
    )
    if PG_URL
    else None
)

TOTAL_OPERATIONS = sum(1 for _ in sqlite_schema.get_all_operations())
#: (backend, operation) → the statuses it answered, over every generated case.
ANSWERED: dict[str, dict[str, set[int]]] = {"sqlite": {}, "postgresql": {}}


@pytest.fixture(scope="module", autouse=True)
def reached_2xx() -> Iterator[None]:
    """After the module: print how many operations ever answered 2xx, and hold the floor."""
    yield
    for backend, answered in ANSWERED.items():
        if not answered:
            continue
        ok = {op for op, statuses in answered.items() if any(200 <= s < 300 for s in statuses)}
        mlflow = [op for op in answered if "/mlflow/" in op]
        print(
            f"\nfuzz[{backend}]: {len(ok)} of {len(answered)} operations answered 2xx at least "
            f"once (MLflow: {len(set(mlflow) & ok)} of {len(mlflow)})"
        )
        # Under xdist a worker runs only its share of the operations: the floor holds for a
        # process that ran them all (`pytest -n 0 tests/server/test_api_fuzz.py`).
        if len(answered) >= TOTAL_OPERATIONS:
            assert len(ok) >= MIN_2XX, (backend, sorted(set(answered) - ok))


def _check(case: schemathesis.Case, backend: str) -> None:
    # A generous read timeout: a loaded CI machine is slow, and slowness is not a 5xx.
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    ANSWERED[backend].setdefault(case.operation.label, set()).add(response.status_code)
    case.validate_response(response, checks=[not_a_server_error])


@sqlite_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case: schemathesis.Case) -> None:
    _check(case, "sqlite")


if pg_schema is not None:

    @pg_schema.parametrize()
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def test_no_operation_answers_with_a_server_error_on_postgresql(
        case: schemathesis.Case,
    ) -> None:
        _check(case, "postgresql")

else:

    def test_no_operation_answers_with_a_server_error_on_postgresql() -> None:
        from conftest import need_service

        need_service("STRATA_TEST_POSTGRES_URL", "PostgreSQL")
