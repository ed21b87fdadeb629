"""scikit-learn estimators and Pipelines: skops by default (no code runs when loading).

skops rebuilds objects from an allow-list of types. Loading accepts the types skops
trusts plus any class defined by scikit-learn, numpy, scipy, LightGBM or XGBoost (a
Pipeline ending in a LightGBM estimator, say); any other type in the file is refused,
named, unless ``trusted=True``. ``serialization="pickle"``/``"joblib"`` are available
with ``trusted=True`` on save and on load, for estimators skops cannot write.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput, PermissionDenied
from strata.models.flavors.base import (
    Flavor,
    Predictor,
    dist_version,
    loaded,
    refuse_untrusted,
    require,
)
from strata.models.models import FlavorSpec

SAFE_ROOTS = frozenset({"sklearn", "numpy", "scipy", "lightgbm", "xgboost", "builtins"})
_FILES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}


def load_skops(path: Path, name: str, *, trusted: bool) -> Any:
    """The object in a skops file; PermissionDenied naming the types from outside
    ``SAFE_ROOTS`` unless ``trusted``."""
    require("skops")
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if t.partition(".")[0] not in SAFE_ROOTS]
    if unsafe and not trusted:
        raise PermissionDenied(
            f"{name} contains types outside scikit-learn, numpy and scipy "
            f"({', '.join(unsafe)}); building them may run their code. Pass "
            f"trusted=True to load it if you trust its source",
            details={"file": name, "types": unsafe},
        )
    return sio.load(path, trusted=untrusted)


class SklearnPredictor(Predictor):
    def __init__(self, estimator: Any, input_kind: str, classes: list[Any] | None) -> None:
        self.estimator = estimator
        self.input_kind = "frame" if input_kind == "frame" else "matrix"
        self.classes = np.asarray(classes) if classes is not None else None
        self._predict = estimator.predict
        self._proba = getattr(estimator, "predict_proba", None) if classes is not None else None

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self._predict(x))

    def predict_proba(self, x: Any) -> np.ndarray:
        if self._proba is None:
            return super().predict_proba(x)
        return np.asarray(self._proba(x), dtype=np.float64)


class SklearnFlavor(Flavor):
    name = "sklearn"
    saves = "scikit-learn estimators and Pipelines"
    packages = ("scikit-learn", "skops", "numpy", "scipy")

    def handles(self, obj: Any) -> bool:
        base = loaded("sklearn.base")
        return base is not None and isinstance(obj, base.BaseEstimator)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        fmt = serialization or "skops"
        if fmt not in _FILES:
            raise InvalidInput(
                f"Unknown serialization {fmt!r} for scikit-learn; expected one of: "
                f"{', '.join(_FILES)}",
                details={"field": "serialization"},
            )
        if fmt != "skops" and not trusted:
            raise refuse_untrusted("a scikit-learn model", fmt, "save")
        path = directory / _FILES[fmt]
        if fmt == "skops":
            require("skops")
            import skops.io as sio

            sio.dump(obj, path)
        elif fmt == "joblib":
            import joblib

            joblib.dump(obj, path)
        else:
            import pickle

            path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        classes = getattr(obj, "classes_", None) if hasattr(obj, "predict_proba") else None
        opts: dict[str, Any] = {
            "input": "frame" if hasattr(obj, "feature_names_in_") else "matrix",
            "estimator": f"{type(obj).__module__}.{type(obj).__qualname__}",
        }
        if classes is not None:
            opts["classes"] = [c.item() if isinstance(c, np.generic) else c for c in classes]
        return FlavorSpec(
            path=path.name,
            serialization=fmt,
            library_version=dist_version("scikit-learn") or "unknown",
            options=opts,
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        path = directory / spec.path
        if spec.serialization == "skops":
            require("skops")

            estimator = load_skops(path, spec.path, trusted=trusted)
        elif spec.serialization in ("pickle", "joblib"):
            if not trusted:
                raise refuse_untrusted(f"{spec.path}", spec.serialization, "load")
            import joblib

            estimator = joblib.load(path)  # reads both pickle and joblib files
        else:
            raise InvalidInput(
                f"strata-model.yaml: flavors.sklearn.serialization: unknown value "
                f"{spec.serialization!r}; expected skops, pickle or joblib",
                details={"key": "flavors.sklearn.serialization"},
            )
        return SklearnPredictor(
            estimator, str(spec.options.get("input", "matrix")), spec.options.get("classes")
        )
