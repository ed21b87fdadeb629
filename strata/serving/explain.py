"""``POST /v1/models/{name}/explain``: per-row SHAP attributions of the served version.

LightGBM and XGBoost boosters compute exact TreeSHAP themselves (``pred_contrib``); a
scikit-learn estimator goes through the same SHAP path as evaluation reports
(:func:`strata.training.explain.explain`: TreeExplainer for trees, permutation otherwise, on
its own input space). Other flavors answer 422: no explanation is better than a wrong one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.models.model import to_flavor_input
from strata.serving.served import ServedModel

MAX_ROWS = 1_000


def explain_rows(served: ServedModel, checked: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"features", "base_value", "values"}``: one row of attributions per input row
    (for a binary classifier, in log-odds of the positive class)."""
    rows = len(next(iter(checked.values()), []))
    if rows > MAX_ROWS:
        raise InvalidInput(
            f"explain takes at most {MAX_ROWS} rows per request, received {rows}",
            details={"field": "records", "expected": MAX_ROWS, "received": rows},
        )
    assert served.signature is not None
    predictor: Any = served.predictor
    x = to_flavor_input(predictor, served.signature, checked)
    booster = getattr(predictor, "booster", None)
    names = served.input_names
    if booster is not None:
        module = type(booster).__module__
        if module.startswith("lightgbm"):
            contrib = np.asarray(booster.predict(x, pred_contrib=True))
        elif module.startswith("xgboost"):
            import xgboost as xgb

            contrib = np.asarray(
                booster.predict(xgb.DMatrix(x, feature_names=names), pred_contribs=True)
            )
        else:
            contrib = None
        if contrib is not None and contrib.ndim == 2 and contrib.shape[1] == len(names) + 1:
            return {
                "features": names,
                "base_value": float(contrib[0, -1]) if rows else None,
                # a column slice is a strided view; the JSON encoder takes C-contiguous arrays
                "values": np.ascontiguousarray(contrib[:, :-1]),
            }
    estimator = getattr(predictor, "estimator", None)
    if estimator is not None:
        import pandas as pd

        from strata.training.explain import explain

        frame = pd.DataFrame(checked, copy=False)
        result = explain(estimator, frame, sample=rows, seed=0, classifier=served.is_classifier)
        if result is not None:
            _kind, features, values, _importance = result
            return {
                "features": features,
                "base_value": None,
                "values": np.ascontiguousarray(values),
            }
    raise InvalidInput(
        f"Model {served.name!r} ({served.model.flavor}) does not support explanations; "
        "LightGBM, XGBoost and scikit-learn models do",
        details={"model": served.name, "flavor": served.model.flavor},
    )
