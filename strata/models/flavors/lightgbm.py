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
from strata.models.flavors.base import Flavor, Predictor, dist_version, loaded, require
from strata.models.models import FlavorSpec

FILE = "model.txt"


class LightGBMPredictor(Predictor):
    def __init__(self, booster: Any, kind: str, classes: list[Any] | None) -> None:
        self.booster = booster
        self.kind = kind
        self.classes = np.asarray(classes) if classes is not None else None
        self._predict = booster.predict

    def predict(self, x: Any) -> np.ndarray:
        out = self._predict(x)
        if self.classes is None:
            return np.asarray(out)
        if out.ndim == 1:
            return np.asarray(self.classes[(out > 0.5).astype(np.intp)])
        return np.asarray(self.classes[np.argmax(out, axis=1)])

    def predict_proba(self, x: Any) -> np.ndarray:
        if self.classes is None:
            return super().predict_proba(x)
        out = np.asarray(self._predict(x), dtype=np.float64)
        return np.column_stack([1.0 - out, out]) if out.ndim == 1 else out


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
        opts: dict[str, Any] = {"kind": "booster"}
        if isinstance(obj, lgb.LGBMClassifier):
            classes = obj.classes_
            opts = {"kind": "classifier", "classes": [_plain(c) for c in classes]}
        elif isinstance(obj, lgb.LGBMModel):
            opts = {"kind": "regressor"}
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


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
