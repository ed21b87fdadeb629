"""Track a small training loop with Strata's fluent API, then find the best run by search.

python examples/tracking.py          # embedded store: $STRATA_HOME (default ~/.strata)
"""

from __future__ import annotations

import math

import strata

for lr in (0.01, 0.1):
    with strata.start_run(experiment="examples-tracking", run_name=f"lr-{lr}"):
        strata.log_params({"lr": lr, "epochs": 20})
        for step in range(20):
            strata.log_metric("loss", math.exp(-lr * step * 5), step=step)
        strata.log_dict({"lr": lr, "note": "a toy curve"}, "config.json")

client = strata.Client()
best = client.tracking.search_runs(
    "examples-tracking", "metrics.loss < 0.5", order_by=["metrics.loss ASC"], max_results=1
).items[0]
print(f"best run {best.info.run_name}: loss {best.metrics['loss']:.4f} (id {best.info.run_id})")
