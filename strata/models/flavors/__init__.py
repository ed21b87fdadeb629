"""The flavors Strata saves, in the order an object is matched against them.

LightGBM and XGBoost come before scikit-learn because their scikit-learn wrappers are also
scikit-learn estimators, and their native formats are safer and faster than skops.
"""

from __future__ import annotations

from typing import Any

from strata.core.errors import InvalidInput
from strata.models.flavors.base import Flavor, Predictor
from strata.models.flavors.lightgbm import LightGBMFlavor
from strata.models.flavors.onnx import OnnxFlavor
from strata.models.flavors.python_function import PythonFunctionFlavor
from strata.models.flavors.pytorch import PyTorchFlavor
from strata.models.flavors.sentence_transformers import SentenceTransformersFlavor
from strata.models.flavors.sklearn import SklearnFlavor
from strata.models.flavors.xgboost import XGBoostFlavor

FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        LightGBMFlavor(),
        XGBoostFlavor(),
        SklearnFlavor(),
        SentenceTransformersFlavor(),  # before pytorch: it is an nn.Module too
        PyTorchFlavor(),
        PythonFunctionFlavor(),  # last of the savers: it matches any load/predict class
        OnnxFlavor(),
    )
}

__all__ = ["FLAVORS", "Flavor", "Predictor", "flavor_for", "get_flavor"]


def flavor_for(obj: Any) -> Flavor:
    """The flavor that saves ``obj``, or InvalidInput naming its type and the flavors."""
    for flavor in FLAVORS.values():
        if flavor.handles(obj):
            return flavor
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    savable = [f for f in FLAVORS.values() if f.saves]
    raise InvalidInput(
        f"Cannot save an object of type {kind}: Strata saves models of these flavors: "
        + ", ".join(f"{f.saves} ({f.name})" for f in savable),
        details={"type": kind, "supported": [f.name for f in savable]},
    )


def get_flavor(name: str, key: str) -> Flavor:
    """The flavor called ``name`` (read from ``key`` of strata-model.yaml)."""
    flavor = FLAVORS.get(name)
    if flavor is None:
        raise InvalidInput(
            f"strata-model.yaml: {key}: unknown flavor {name!r}; this Strata loads "
            f"{', '.join(FLAVORS)}",
            details={"key": key},
        )
    return flavor
