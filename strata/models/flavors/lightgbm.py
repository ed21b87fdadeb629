"""LightGBM boosters and its scikit-learn wrappers, as LightGBM's own model text.

The text format is data (no code runs when reading it). A wrapper (``LGBMClassifier``,
``LGBMRegressor``) is stored as its booster plus what the wrapper adds: the classes, so a
classifier predicts labels and probabilities exactly as the wrapper does.
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

FILE = "model.txt"


class LightGBMPredictor(BoosterPredictor):
    def raw(self, x: Any) -> np.ndarray:
        out: np.ndarray = self.booster.predict(x)
        return out


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    saves = "LightGBM Booster/LGBMModel"
    packages = ("lightgbm", "numpy", "scipy")

    def handles(self, obj: Any) -> bool:
        lgb = loaded("lightgbm")
        return lgb is not None and isinstance(obj, lgb.Booster | lgb.LGBMModel)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        lgb = require("lightgbm")
        if serialization not in (None, "lightgbm-text"):
            raise InvalidInput(
                f"LightGBM models are saved as lightgbm-text, not {serialization!r}",
                details={"field": "serialization"},
            )
        booster = obj if isinstance(obj, lgb.Booster) else obj.booster_
        booster.save_model(str(directory / FILE))
        opts = booster_options(obj, lgb.LGBMClassifier, lgb.LGBMModel)
        return FlavorSpec(
            path=FILE,
            serialization="lightgbm-text",
            library_version=dist_version("lightgbm") or "unknown",
            options=opts,
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        lgb = require("lightgbm")
        booster = lgb.Booster(model_file=str(directory / spec.path))
        return LightGBMPredictor(
            booster, str(spec.options.get("kind", "booster")), spec.options.get("classes")
        )
