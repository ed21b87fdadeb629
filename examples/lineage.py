"""Lineage from raw data to the run trained on it: ingest, derive with SQL, log the derived
version as a run's input, then walk the graph down from the raw version.

    python examples/lineage.py
"""

from __future__ import annotations

import pandas as pd

import strata

client = strata.Client()
raw = client.data.ingest(
    pd.DataFrame({"city": ["a", "b", "a", "c"], "temp": [10.0, 14.5, 12.0, 9.0]}),
    "examples-weather",
)
daily = client.data.transform(
    {"w": raw.ref},
    output="examples-weather-by-city",
    sql="SELECT city, avg(temp) AS mean_temp FROM w GROUP BY city ORDER BY city",
)
with strata.start_run(experiment="examples-lineage", run_name="trained-on-weather") as run:
    strata.log_input(daily.ref, context="train")
    strata.log_metric("rmse", 1.23)

graph = client.lineage(raw.ref, direction="down")
for edge in graph.edges:
    if edge.kind != "version":
        print(f"{edge.source} -> {edge.target} ({edge.kind})")
runs = [n for n in graph.nodes if n.kind == "run"]
print(f"{raw.ref} reaches run {runs[0].label} ({run.info.run_id})")
