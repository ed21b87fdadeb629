"""Distributed data-parallel PyTorch on CPU: 2 gloo processes through Ray Train on a local
Ray cluster reach the single-process metrics within 1e-3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.train.torch")

from strata.client import Client  # noqa: E402
from strata.training.job import train  # noqa: E402

from .conftest import base_config  # noqa: E402

PARAMS = {
    "hidden_layers": [16],
    "dropout": 0.0,  # dropout draws differ per process; without it the steps are the same
    "epochs": 4,
    "batch_size": 128,  # even: each worker takes 64 rows of every batch
    "learning_rate": 0.01,
    "patience": 50,
}


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def cfg(workers: int) -> dict[str, Any]:
    params = {**PARAMS, "distributed_workers": workers}
    return base_config(model={"family": "pytorch", "params": params}, evaluate=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_gloo_workers_match_one_process(
    home_client: Client, flights: str, local_ray: None
) -> None:
    torch.set_num_threads(1)
    one = train(cfg(1), client=home_client)
    two = train(cfg(2), client=home_client)
    assert set(one.metrics) == set(two.metrics)
    for key, value in one.metrics.items():
        assert two.metrics[key] == pytest.approx(value, abs=1e-3), key
    assert two.metrics["test_roc_auc"] > 0.7
    run = home_client.tracking.get_run(two.run_id)
    assert run.params["model.params.distributed_workers"] == "2"
    assert run.tags["strata.training.distributed"] == "ray-train:gloo:2"  # 2 ranks reported
