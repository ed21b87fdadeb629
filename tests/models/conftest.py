from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris


@pytest.fixture(scope="session")
def iris() -> tuple[pd.DataFrame, Any]:
    """Iris with named float columns and integer classes (scikit-learn's bundled copy)."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return X, y
