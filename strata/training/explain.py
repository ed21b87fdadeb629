"""SHAP explanations on a bounded sample: TreeExplainer for tree models (exact, fast), a
permutation explainer (model-agnostic) otherwise, always on the model's own input space —
the preprocessed columns when the model is a Pipeline ``prep`` → ``model``.

Returns the global importance (mean |SHAP| per feature, largest first) and the per-row
values (one row per explained input row, one column per feature) for storage with the run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Model-agnostic explanations cost ~2 x features model calls per row: keep them bounded.
MAX_AGNOSTIC_ROWS = 100
BACKGROUND_ROWS = 50

_TREE_MODULES = ("lightgbm", "xgboost", "sklearn.ensemble", "sklearn.tree")


def _is_tree(est: Any) -> bool:
    module = type(est).__module__
    return module.startswith(_TREE_MODULES) and (
        hasattr(est, "feature_importances_") or hasattr(est, "get_booster")
    )


def _is_linear(est: Any) -> bool:
    """A fitted linear model (coef_ + intercept_) of scikit-learn: exact, fast SHAP values
    (the text family's head on hundreds of embedding dimensions)."""
    module = type(est).__module__
    return (
        module.startswith("sklearn.linear_model")
        and hasattr(est, "coef_")
        and hasattr(est, "intercept_")
    )


def _positive(values: Any) -> np.ndarray:
    """SHAP values for the positive (last) class whatever shape shap returned."""
    if isinstance(values, list):
        values = values[-1]
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 3:
        arr = arr[:, :, -1]
    return arr


def explain(
    model: Any, X: Any, *, sample: int, seed: int, classifier: bool
) -> tuple[str, list[str], np.ndarray, dict[str, float]] | None:
    """``(explainer, feature names, per-row SHAP values, global importance)`` for up to
    ``sample`` rows of ``X``, or None when ``sample`` is 0 or the model is not a Pipeline /
    estimator shap can explain."""
    if sample <= 0 or len(X) == 0:
        return None
    import shap

    rng = np.random.default_rng(seed)
    n = min(sample, len(X))
    rows = np.sort(rng.choice(len(X), size=n, replace=False))
    Xs = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
    steps = getattr(model, "named_steps", None)
    columns: list[str] | None = None
    if steps is not None and "prep" in steps and "model" in steps:
        est = steps["model"]
        Xt = np.asarray(steps["prep"].transform(Xs), dtype=float)
        names = [str(c) for c in steps["prep"].get_feature_names_out()]
    elif hasattr(model, "fit"):
        est = model
        Xt = np.asarray(Xs, dtype=float)
        names = [str(c) for c in getattr(Xs, "columns", range(Xt.shape[1]))]
        columns = list(Xs.columns) if hasattr(Xs, "columns") else None
    else:
        return None
    if _is_tree(est):
        explainer = shap.TreeExplainer(est)
        values = _positive(explainer(Xt, check_additivity=False).values)
        kind = "tree"
    elif _is_linear(est):
        background = Xt[: min(BACKGROUND_ROWS, len(Xt))]
        values = _positive(shap.LinearExplainer(est, background)(Xt).values)
        kind = "linear"
    else:
        m = min(len(Xt), MAX_AGNOSTIC_ROWS)
        Xt = Xt[:m]
        background = Xt[: min(BACKGROUND_ROWS, m)]

        def framed(a: np.ndarray) -> Any:
            # an estimator fitted on named columns wants them back
            if columns is None:
                return a
            import pandas as pd

            return pd.DataFrame(a, columns=columns)

        if classifier and hasattr(est, "predict_proba"):

            def fn(a: np.ndarray) -> np.ndarray:
                return np.asarray(est.predict_proba(framed(a)))[:, -1]
        else:

            def fn(a: np.ndarray) -> np.ndarray:
                return np.asarray(est.predict(framed(a)), dtype=float)

        explainer = shap.PermutationExplainer(fn, background, seed=seed)
        evals = max(500, 2 * Xt.shape[1] + 1)  # shap's floor for this many features
        values = _positive(explainer(Xt, silent=True, max_evals=evals).values)
        kind = "permutation"
    importance = np.abs(values).mean(axis=0)
    order = np.argsort(-importance, kind="stable")
    glob = {names[i]: float(importance[i]) for i in order}
    return kind, names, values, glob
