"""The serving page as a viewer: published endpoints with their version, traffic split,
counts and latency, shadow and fallback; policy load errors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from strata.backends.artifacts import ArtifactStore
from strata.core.principal import Role
from strata.serving.models import EndpointStatus, TrafficPolicy
from strata.serving.policies import publish_status
from ui.conftest import UiEnv


def test_serving_page(ui_env: UiEnv) -> None:
    with ui_env.http(Role.VIEWER) as http:
        empty = http.get("/serving")
        assert empty.status_code == 200 and "No endpoints published" in empty.text
    policy = TrafficPolicy.model_validate(
        {
            "canary": [{"model": "flights/4", "weight": 0.1}],
            "shadow": {"model": "flights@challenger", "fraction": 0.5},
            "fallback": {"model": "flights/2"},
        }
    )
    status = EndpointStatus(
        name="flights",
        model="flights@production",
        version="3",
        ready=True,
        policy=policy,
        policy_errors={"flights@challenger": "alias 'challenger' not found"},
        stats={"requests": 120, "errors": 2, "latency_s": 0.3, "shadow": 50, "fallback": 4},
        updated_at=datetime.now(UTC),
        server="host-a:1",
    )
    store = ArtifactStore(ui_env.client.settings.artifact_uri)
    publish_status(store, status)
    second = {
        "stats": {
            "requests": 80,
            "errors": 1,
            "latency_s": 0.2,
            "shadow": 40,
            "fallback_cache": 3,
            "window_requests": 10,
            "window_errors": 1,
            "window_latency_s": 0.04,
        },
        "server": "host-b:2",
    }
    publish_status(store, status.model_copy(update=second))
    gone = {
        "stats": {"requests": 5000},
        "server": "host-c:3",
        "updated_at": datetime(2020, 1, 1, tzinfo=UTC),
    }
    publish_status(store, status.model_copy(update=gone))  # long gone: not added
    with ui_env.http(Role.VIEWER) as http:
        page = http.get("/serving")
        assert page.status_code == 200
        text = page.text
        needles = [
            "flights@production",
            "primary 90.0%",
            "flights/4 10.0%",
            "flights@challenger (50.0%)",
            '<td class="num">200</td>',  # the two live workers' requests added up
            "2.50 ms overall",
            "4.00 ms lately",
            "3 (1 lately)",
            '<td class="num">90</td>',
            '<td class="num">7</td>',  # fallbacks: by model and by cached answer
            "2 workers",
            "alias &#39;challenger&#39; not found",
        ]
        for needle in needles:
            assert needle in text, needle
    with ui_env.http() as anonymous:
        assert anonymous.get("/serving").status_code in (302, 303, 401)


def test_a_forged_jobs_page_token_is_a_clear_400(ui_env: UiEnv) -> None:
    with ui_env.http(Role.VIEWER) as http:
        deep = base64.urlsafe_b64encode(b"[" * 1000).decode()  # JSON past the parser's depth
        for forged in ("nonsense", "eyJvZmZzZXQiOiAtMX0=", "x" * 5000, deep):
            page = http.get("/serving/jobs", params={"page": forged})
            assert page.status_code == 400, (forged[:20], page.status_code)
            assert "page_token" in page.text and "Traceback" not in page.text
