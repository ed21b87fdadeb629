"""A serving worker freezes its heap once its models are loaded (full collections then skip
the libraries' and models' objects: the serving p99), and a swapped-out version is still
freed — at once, or at a later poll when a request still held it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from strata.serving.batching import Batcher
from strata.serving.endpoints import Endpoints
from strata.serving.metrics import ServingMetrics
from strata.serving.models import Batching, ServeConfig
from strata.serving.served import ServedModel

from .conftest import Flights


@pytest.fixture
def endpoints(flights: Flights) -> Iterator[Endpoints]:
    config = ServeConfig.model_validate(
        {"endpoints": [{"model": "flights@champion"}], "poll_seconds": 3600}
    )
    eps = Endpoints(
        config,
        tracking=flights.client.tracking,
        registry=flights.client.registry,
        freeze_heap=True,
    )
    try:
        yield eps
    finally:
        flights.client.registry.set_alias("flights", "champion", 1)
        gc.unfreeze()  # give the test process its ordinary collector back


def _with_batcher(served: ServedModel, pool: ThreadPoolExecutor) -> ServedModel:
    """What the router gives a version on its first batched request: a batching queue,
    which refers back to the version (a cycle only the cyclic collector frees)."""
    served.batcher = Batcher(served, Batching(), pool, ServingMetrics())
    return served


def test_the_heap_is_frozen_once_loaded_and_a_swapped_version_freed(
    flights: Flights, endpoints: Endpoints
) -> None:
    gc.unfreeze()
    endpoints.load_all()
    ep = endpoints.get("flights")
    assert ep.primary is not None and ep.primary.version == "1"
    assert gc.get_freeze_count() > 0
    with ThreadPoolExecutor(1) as pool:
        first = weakref.ref(_with_batcher(ep.primary, pool))
    flights.client.registry.set_alias("flights", "champion", 2)
    endpoints.poll()
    assert ep.primary.version == "2"
    assert first() is None  # collected by the poll itself, not left frozen
    assert gc.get_freeze_count() > 0


def test_a_version_still_in_use_keeps_the_heap_unfrozen_until_it_is_gone(
    flights: Flights, endpoints: Endpoints
) -> None:
    gc.unfreeze()
    endpoints.load_all()
    ep = endpoints.get("flights")
    held = ep.primary  # a request still predicting with version 1
    assert held is not None
    with ThreadPoolExecutor(1) as pool:
        first = weakref.ref(_with_batcher(held, pool))
    flights.client.registry.set_alias("flights", "champion", 2)
    endpoints.poll()
    assert ep.primary is not None and ep.primary.version == "2"
    assert gc.get_freeze_count() == 0  # frozen now, version 1 would never be freed
    del held
    endpoints.poll()  # the next poll finds it gone
    assert first() is None
    assert gc.get_freeze_count() > 0


def test_not_ready_until_the_heap_is_settled(
    endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readiness (`/v2/health/ready` reads `Endpoints.ready`) waits for the first load to
    end, its full collection included: traffic never meets that pause."""
    seen: list[bool] = []
    settle = Endpoints._settle_heap

    def watched(self: Endpoints, before: Any) -> None:
        seen.append(self.ready)
        settle(self, before)

    monkeypatch.setattr(Endpoints, "_settle_heap", watched)
    gc.unfreeze()
    endpoints.load_all()
    assert seen == [False]
    assert endpoints.ready
