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
from strata.models.flavors.base import (
    BoosterPredictor,
    Flavor,
    Predictor,
    booster_options,
    dist_version,
    loaded,
    require,
)
from strata.models.models import FlavorSpec

FILE = "model.ubj"


class XGBoostPredictor(BoosterPredictor):
    def raw(self, x: Any) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(x))


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
        opts = booster_options(obj, xgb.XGBClassifier, xgb.XGBModel)
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
