"""Model families: a preprocessing + estimator scikit-learn Pipeline per config.

The Pipeline is what the job saves (models layer, skops: no pickle), so preprocessing is
part of the model: serving gets raw columns and the same encoding happens there.

- Boosters (LightGBM, XGBoost) take NaN natively; categoricals are ordinal-encoded (unknown
  and missing categories → -1).
- scikit-learn estimators get median imputation and scaling for numbers and one-hot
  encoding (at most ``MAX_ONE_HOT`` levels per column, rarer ones pooled; unknown levels
  ignored) for text.

Estimators by import path: only modules under ``sklearn.``, ``lightgbm.`` and ``xgboost.``
unless the config says ``trusted: true``. Importing a module runs its code and the class is
built with config-given arguments; a config is user input (it may come from anyone allowed
to start a job), so an arbitrary path (``os.system``, a module with side effects) must not be
one YAML line away. Trusted estimators from elsewhere are also refused by the skops model
format unless the model is saved trusted, which the job then does.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from strata.core.errors import InvalidInput
from strata.training.models import Family, ModelConfig, Task

ALLOWED_PREFIXES = ("sklearn.", "lightgbm.", "xgboost.")
MAX_ONE_HOT = 32


def _import_estimator(path: str, trusted: bool) -> type:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise InvalidInput(
            f"model.estimator {path!r} must be an import path such as "
            "sklearn.linear_model.LogisticRegression",
            details={"field": "model.estimator"},
        )
    if not trusted and not path.startswith(ALLOWED_PREFIXES):
        raise InvalidInput(
            f"model.estimator {path!r} is outside the allowed modules "
            f"({', '.join(p + '*' for p in ALLOWED_PREFIXES)}); importing a module runs its "
            "code, so other estimators need model.trusted: true",
            details={"field": "model.estimator"},
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"model.estimator {path!r}: module {module_name!r} cannot be imported ({exc})",
            details={"field": "model.estimator"},
        ) from None
    cls = getattr(module, attr, None)
    if not inspect.isclass(cls) or not hasattr(cls, "fit") or not hasattr(cls, "get_params"):
        raise InvalidInput(
            f"model.estimator {path!r} is not a scikit-learn estimator class (fit, get_params)",
            details={"field": "model.estimator"},
        )
    return cls


def _check_params(cls: type, params: dict[str, Any]) -> None:
    valid = sorted(cls().get_params(deep=False)) if _constructible(cls) else None
    if valid is None:
        return
    import difflib

    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InvalidInput(
                f"model.params.{key} is not a parameter of {cls.__name__}.{hint}",
                details={"field": f"model.params.{key}", "valid": valid},
            )


def _constructible(cls: type) -> bool:
    try:
        cls()
    except Exception:  # an estimator with required arguments: let fit-time errors speak
        return False
    return True


#: The families that train each of the two label-free / query-wise tasks.
RANKING_FAMILIES = (Family.LIGHTGBM, Family.XGBOOST, Family.SKLEARN)
CLUSTERING_FAMILIES = (Family.SKLEARN,)


def _task_family(model: ModelConfig, task: Task) -> type | None:
    """The estimator class of a ranking or clustering job (None for the other tasks);
    InvalidInput when the family cannot do the task."""
    if task is Task.RANKING:
        if model.family not in RANKING_FAMILIES:
            raise InvalidInput(
                f"family {model.family.value!r} does not rank; task 'ranking' takes family "
                "lightgbm (LGBMRanker), xgboost (XGBRanker) or sklearn (a regressor scoring "
                "each item)",
                details={"field": "model.family"},
            )
        if model.family is Family.LIGHTGBM:
            import lightgbm

            ranker: type = lightgbm.LGBMRanker
            return ranker
        if model.family is Family.XGBOOST:
            import xgboost

            ranker = xgboost.XGBRanker
            return ranker
        return None
    if task is Task.CLUSTERING and model.family not in CLUSTERING_FAMILIES:
        raise InvalidInput(
            f"family {model.family.value!r} does not cluster; task 'clustering' takes "
            "family sklearn with a clusterer, e.g. model: {family: sklearn, estimator: "
            "sklearn.cluster.KMeans, params: {n_clusters: 5}}",
            details={"field": "model.family"},
        )
    return None


def estimator_class(model: ModelConfig, task: Task) -> type:
    special = _task_family(model, task)
    if special is not None:
        return special
    if model.family is Family.LIGHTGBM:
        import lightgbm

        return lightgbm.LGBMClassifier if task is Task.CLASSIFICATION else lightgbm.LGBMRegressor
    if model.family is Family.XGBOOST:
        import xgboost

        return xgboost.XGBClassifier if task is Task.CLASSIFICATION else xgboost.XGBRegressor
    if model.family is Family.PYTORCH:
        from strata.training import torch_family as tf

        if model.module is not None:
            tf.user_module_class(model.module)  # trusted (ModelConfig): fail before the fit
            classifier = task is Task.CLASSIFICATION
            return tf.TorchModuleClassifier if classifier else tf.TorchModuleRegressor
        return tf.TorchMLPClassifier if task is Task.CLASSIFICATION else tf.TorchMLPRegressor
    if model.family is Family.TEXT and model.estimator is None:
        from sklearn.linear_model import LogisticRegression, Ridge

        head: type = LogisticRegression if task is Task.CLASSIFICATION else Ridge
        return head
    assert model.estimator is not None  # checked by ModelConfig
    cls = _import_estimator(model.estimator, model.trusted)
    if task is Task.CLUSTERING and not hasattr(cls, "predict"):
        raise InvalidInput(
            f"model.estimator {model.estimator!r} cannot assign new rows to its clusters (it "
            "has no predict), so the model could not serve; use a clusterer with predict "
            "such as sklearn.cluster.KMeans, MiniBatchKMeans, BisectingKMeans or "
            "sklearn.mixture.GaussianMixture",
            details={"field": "model.estimator"},
        )
    return cls


def build_estimator(model: ModelConfig, task: Task, seed: int) -> Any:
    cls = estimator_class(model, task)
    params = dict(model.params)
    _check_params(cls, params)
    defaults: dict[str, Any] = {}
    if model.family is Family.LIGHTGBM:
        defaults = {"random_state": seed, "verbose": -1, "n_jobs": 1, "deterministic": True}
    elif model.family is Family.XGBOOST:
        defaults = {"random_state": seed, "n_jobs": 1, "tree_method": "hist"}
    elif "random_state" in inspect.signature(cls).parameters:
        defaults = {"random_state": seed}
    if model.family is Family.PYTORCH and model.module is not None:
        defaults["module"] = model.module
    if model.family is Family.TEXT and model.estimator is None and task is Task.CLASSIFICATION:
        defaults["max_iter"] = 1000  # embeddings are not scaled for lbfgs' default 100
    try:
        return cls(**{**defaults, **params})
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"model.params do not fit {cls.__name__}: {exc}", details={"field": "model.params"}
        ) from None


def build_pipeline(
    model: ModelConfig, task: Task, seed: int, numeric: list[str], categorical: list[str]
) -> Any:
    """The unfitted Pipeline ``prep`` → ``model`` for these columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    booster = model.family in (Family.LIGHTGBM, Family.XGBOOST)
    transformers: list[tuple[str, Any, list[str]]] = []
    if model.family is Family.TEXT:
        if not categorical:
            raise InvalidInput(
                "family 'text' embeds text columns, and the features have none; add a text "
                "column to features (or use another family)",
                details={"field": "features"},
            )
        from strata.training.text_family import DEFAULT_MODEL, TextEmbedder

        transformers.append(("text", TextEmbedder(model.embedding or DEFAULT_MODEL), categorical))
        categorical = []
    if numeric:
        num: Any = (
            "passthrough"
            if booster
            else Pipeline(
                [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
            )
        )
        transformers.append(("num", num, numeric))
    if categorical:
        if booster:
            cat: Any = Pipeline(
                [
                    ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                    (
                        "encode",
                        OrdinalEncoder(
                            handle_unknown="use_encoded_value",
                            unknown_value=-1,
                            dtype=float,
                        ),
                    ),
                ]
            )
        else:
            cat = Pipeline(
                [
                    ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                    (
                        "encode",
                        OneHotEncoder(
                            handle_unknown="infrequent_if_exist",
                            max_categories=MAX_ONE_HOT,
                            sparse_output=False,
                        ),
                    ),
                ]
            )
        transformers.append(("cat", cat, categorical))
    prep = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("prep", prep), ("model", build_estimator(model, task, seed))])


def feature_importance(pipeline: Any) -> dict[str, float]:
    """Importance per transformed feature (tree importances or |coefficients|), largest
    first; empty when the estimator has neither."""
    import numpy as np

    est = pipeline.named_steps["model"]
    try:
        names = [str(n) for n in pipeline.named_steps["prep"].get_feature_names_out()]
    except (AttributeError, ValueError):
        return {}
    values: Any = getattr(est, "feature_importances_", None)
    if values is None and hasattr(est, "coef_"):
        coef = np.asarray(est.coef_)
        values = np.abs(coef).mean(axis=0) if coef.ndim > 1 else np.abs(coef)
    if values is None or len(values) != len(names):
        return {}
    pairs = sorted(zip(names, (float(v) for v in values), strict=True), key=lambda p: -p[1])
    return dict(pairs)
