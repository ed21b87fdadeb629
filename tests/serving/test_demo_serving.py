"""`make demo`'s serving step: the registered flights model (a tensor-input scikit-learn
model, as the demo logs it) is served by the inference server and answers over MLflow's
protocol and the Open Inference Protocol."""

from __future__ import annotations

import re

import numpy as np
import pytest

import strata
from strata import demo

from .conftest import FEATURES, _flights


def test_the_demo_serves_the_staged_model(capsys: pytest.CaptureFixture[str]) -> None:
    from sklearn.linear_model import LogisticRegression

    frame = _flights()
    x = frame[FEATURES].to_numpy(dtype="float64")
    model = LogisticRegression(max_iter=200).fit(x, frame["late"])
    client = strata.Client()
    with strata.start_run(experiment="demo-serving", client=client, capture_environment=False):
        info = strata.log_model(model, "model", input_example=x[:5])
    version = client.registry.create_version("flights-delay", info.model_uri).version
    client.registry.set_alias("flights-delay", "staging", version)
    line = demo.serve_prediction(int(version))
    want = int(model.predict(x[:1])[0])
    assert f"POST /invocations answered [{want}]" in line, line
    assert f"(model version {version})" in line
    proba = re.search(r"'probabilities': \[([^\]]+)\]", line)
    assert proba is not None, line
    got = np.array([float(v) for v in proba.group(1).split(",")])
    assert np.allclose(got, model.predict_proba(x[:1])[0])
