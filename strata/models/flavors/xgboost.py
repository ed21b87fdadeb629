"""XGBoost boosters and its scikit-learn wrappers, as UBJSON (XGBoost's binary JSON).

UBJSON is data (no code runs when reading it). Predictions go through
``Booster.inplace_predict`` on the float matrix (no DMatrix, no pandas). A classifier keeps
its classes so labels and probabilities match the wrapper's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.models.flavors.base import Flavor, Predictor, dist_version, loaded, require
from strata.models.models import FlavorSpec

FILE = "model.ubj"


class XGBoostPredictor(Predictor):
    def __init__(self, booster: Any, kind: str, classes: list[Any] | None) -> None:
        self.booster = booster
        self.kind = kind
        self.classes = np.asarray(classes) if classes is not None else None

    def predict(self, x: Any) -> np.ndarray:
        out = np.asarray(self.booster.inplace_predict(x))
        if self.classes is None:
            return out
        if out.ndim == 1:
            return np.asarray(self.classes[(out > 0.5).astype(np.intp)])
        return np.asarray(self.classes[np.argmax(out, axis=1)])

    def predict_proba(self, x: Any) -> np.ndarray:
        if self.classes is None:
            return super().predict_proba(x)
        out = np.asarray(self.booster.inplace_predict(x), dtype=np.float64)
        return np.column_stack([1.0 - out, out]) if out.ndim == 1 else out


class XGBoostFlavor(Flavor):
    name = "xgboost"
    saves = "XGBoost Booster/XGBModel"
    packages = ("xgboost", "xgboost-cpu", "numpy", "scipy")

    def handles(self, obj: Any) -> bool:
        xgb = loaded("xgboost")
        return xgb is not None and isinstance(obj, xgb.Booster | xgb.XGBModel)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        xgb = require("xgboost")
        if serialization not in (None, "xgboost-ubj"):
            raise InvalidInput(
                f"XGBoost models are saved as xgboost-ubj, not {serialization!r}",
                details={"field": "serialization"},
            )
        booster = obj if isinstance(obj, xgb.Booster) else obj.get_booster()
        booster.save_model(str(directory / FILE))
        opts: dict[str, Any] = {"kind": "booster"}
        if isinstance(obj, xgb.XGBClassifier):
            classes = [c.item() if isinstance(c, np.generic) else c for c in obj.classes_]
            opts = {"kind": "classifier", "classes": classes}
        elif isinstance(obj, xgb.XGBModel):
            opts = {"kind": "regressor"}
        return FlavorSpec(
            path=FILE,
            serialization="xgboost-ubj",
            library_version=dist_version("xgboost", "xgboost-cpu") or "unknown",
            options=opts,
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        xgb = require("xgboost")
        booster = xgb.Booster()
        booster.load_model(str(directory / spec.path))
        return XGBoostPredictor(
            booster, str(spec.options.get("kind", "booster")), spec.options.get("classes")
        )
