"""Property-based fuzzing of the whole REST API from its OpenAPI document (schemathesis).

Every operation of every layer gets generated requests, authenticated as an admin; none may
answer with a 5xx. (Bounded: a handful of examples per operation, in-process over ASGI.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from strata.client import Client
from strata.core.config import Settings
from strata.governance.service import EmbeddedGovernance
from strata.server.app import create_app

TOKEN = "strata_" + "f" * 40


def _app(root: Path) -> object:
    s = Settings(home=root / "home")
    client = Client("", settings=s)
    EmbeddedGovernance(client.backends).bootstrap_admin(secret=TOKEN)
    return create_app(s, client=client, auth=True)


# Built at import: schemathesis parametrizes from the schema at collection time.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", _app(Path(tempfile.mkdtemp(prefix="strata-fuzz-")))
)


@schema.parametrize()
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    case.validate_response(response, checks=[not_a_server_error])
