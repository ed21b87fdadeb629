"""Paging when every sort key ties (the service, embedded; its clock frozen so that all 40
experiments and registered models share one creation time): each item comes once, in
MLflow's order — experiments by id descending after an explicit order (the newer first),
registered models by name. ``test_mlflow_parity.py`` checks the same order against a real
``mlflow server`` with the ties its speed happens to make."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from strata.client import Client
from strata.core.config import Settings
from strata.core.page import iterate_pages


@pytest.fixture
def frozen(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    client = Client("", settings=sqlite_settings)
    monkeypatch.setattr("strata.tracking.embedded_experiments.now_ms", lambda: 1_000)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setattr("strata.registry.embedded.utcnow", lambda: at)
    yield client
    client.close()


def _pages(search: Any) -> list[Any]:
    return list(iterate_pages(search))


def test_tied_experiments_page_by_id_descending(frozen: Client) -> None:
    made = [frozen.tracking.create_experiment(f"tie-{i:02d}").experiment_id for i in range(40)]
    found = _pages(
        lambda t: frozen.tracking.search_experiments(
            filter="name LIKE 'tie-%'", order_by=["creation_time ASC"], max_results=7, page_token=t
        )
    )
    assert {e.creation_time for e in found} == {1_000}  # every key ties
    assert [e.experiment_id for e in found] == made[::-1]  # each once, the newer first


def test_tied_registered_models_page_by_name(frozen: Client) -> None:
    names = [f"tie-{i:02d}" for i in range(40)]
    for name in random.Random(7).sample(names, 40):  # made out of name order
        frozen.registry.create_model(name)
    found = _pages(
        lambda t: frozen.registry.search_models(  # no filter: a scan in the order made
            order_by=["updated_at DESC"], max_results=7, page_token=t
        )
    )
    assert len({m.updated_at for m in found}) == 1  # every key ties
    assert [m.name for m in found] == names
