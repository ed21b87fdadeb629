"""Unmodified MLflow client code logging to a `strata server`.

strata server --port 5000 &            # prints the admin token on its first start
export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_TRACKING_TOKEN=<token>
python examples/mlflow_client.py
"""

from __future__ import annotations

import os

import mlflow

if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http"):
    raise SystemExit("Set MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN) to a strata server")

mlflow.set_experiment("examples-mlflow")
with mlflow.start_run(run_name="mlflow-client") as run:
    mlflow.log_params({"model": "logistic", "C": 1.0})
    for step in range(10):
        mlflow.log_metric("auc", 0.7 + step * 0.02, step=step)
    mlflow.set_tag("source", "examples/mlflow_client.py")

found = mlflow.search_runs(experiment_names=["examples-mlflow"], filter_string="metrics.auc > 0.8")
print(f"logged run {run.info.run_id}; {len(found)} run(s) with auc > 0.8")
