"""Formats that run code when read need trusted=True on save and on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import strata.models as sm
from strata.core.errors import InvalidInput, PermissionDenied

Iris = tuple[pd.DataFrame, Any]


def _double(x: Any) -> Any:  # a user function: skops cannot vouch for it
    return x * 2


@pytest.mark.parametrize("fmt", ["pickle", "joblib"])
def test_pickle_needs_trusted_on_save_and_load(fmt: str, iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    with pytest.raises(
        PermissionDenied, match=f"as {fmt}: {fmt} runs arbitrary code .* trusted=True"
    ):
        sm.save(clf, tmp_path / "m", serialization=fmt)
    assert not (tmp_path / "m").exists()
    sm.save(clf, tmp_path / "m", serialization=fmt, trusted=True, input_example=X.head(2))
    with pytest.raises(PermissionDenied, match=r"Refusing to load model.* trusted=True"):
        sm.load(tmp_path / "m")
    loaded = sm.load(tmp_path / "m", trusted=True)
    assert np.array_equal(loaded.predict(X), clf.predict(X))


def test_skops_refuses_foreign_types_unless_trusted(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    pipe = make_pipeline(FunctionTransformer(_double), LogisticRegression(max_iter=300)).fit(X, y)
    sm.save(pipe, tmp_path / "m", input_example=X.head(2))
    with pytest.raises(PermissionDenied, match=r"test_trust\._double") as err:
        sm.load(tmp_path / "m")
    assert err.value.details["file"] == "model.skops"
    loaded = sm.load(tmp_path / "m", trusted=True)
    assert np.array_equal(loaded.predict(X), pipe.predict(X))


def test_unknown_serialization_is_named(iris: Iris, tmp_path: Path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=300).fit(X, y)
    with pytest.raises(InvalidInput, match=r"Unknown serialization 'cloudpickle'"):
        sm.save(clf, tmp_path / "m", serialization="cloudpickle", trusted=True)


def test_an_attackers_skops_file_with_a_function_is_refused(iris: Iris, tmp_path: Path) -> None:
    """A FunctionTransformer calls its func on every prediction: a skops file naming
    builtins.eval (or numpy.load) there must not load without trust, even though both come
    from libraries whose classes are allowed."""
    import builtins

    import skops.io as sio

    X, y = iris
    for func, name in ((builtins.eval, "builtins.eval"), (np.load, "numpy.load")):
        clf = LogisticRegression(max_iter=300).fit(X, y)
        sm.save(clf, tmp_path / name, input_example=X.head(2))
        evil = make_pipeline(FunctionTransformer(func), LogisticRegression())
        skops_file = tmp_path / name / "model.skops"
        skops_file.chmod(0o644)
        sio.dump(evil, skops_file)
        from strata.models import store

        spec, _ = store.read_spec(tmp_path / name)  # an attacker rewrites the digests too
        store.write_spec(
            tmp_path / name, spec.model_copy(update={"files": store.digest_files(tmp_path / name)})
        )
        with pytest.raises(PermissionDenied, match=name.replace(".", r"\.")) as err:
            sm.load(tmp_path / name)
        assert err.value.details["types"] == [name]


def test_allowed_types_are_classes_and_ufuncs() -> None:
    from strata.models.flavors.sklearn import allowed_type

    assert allowed_type("lightgbm.sklearn.LGBMClassifier")
    assert allowed_type("numpy.log1p") and allowed_type("collections.OrderedDict")
    for refused in ("builtins.eval", "numpy.load", "scipy.io.loadmat", "os.system", "numpy.nope"):
        assert not allowed_type(refused), refused
