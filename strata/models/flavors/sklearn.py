"""scikit-learn estimators and Pipelines: skops by default (no code runs when loading).

skops rebuilds objects from an allow-list of types. Loading accepts the types skops
trusts plus classes defined by scikit-learn, numpy, scipy, LightGBM or XGBoost (a Pipeline
ending in a LightGBM estimator, say) and numpy ufuncs; any other name in the file — a
function (even ``builtins.eval`` or ``numpy.load``), a class of another package — is
refused, named, unless ``trusted=True``. ``serialization="pickle"``/``"joblib"`` are available
with ``trusted=True`` on save and on load, for estimators skops cannot write.
"""

from __future__ import annotations

import sys
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

SAFE_ROOTS = frozenset({"sklearn", "numpy", "scipy", "lightgbm", "xgboost"})
"""Libraries whose *classes* (and numpy's ufuncs) a skops file may name without trust."""
SAFE_TYPES = frozenset(
    {
        "collections.OrderedDict",
        # Strata's own training estimators: their state is numbers and numpy arrays, and
        # rebuilding them imports nothing the file names (strata/training/torch_family.py,
        # text_family.py). The user-module variants are deliberately not here.
        "strata.training.torch_family.TorchMLPClassifier",
        "strata.training.torch_family.TorchMLPRegressor",
        "strata.training.text_family.TextEmbedder",
    }
)
_FILES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}


def _resolve(name: str) -> Any:
    """The object a dotted name names, importing only modules of ``SAFE_ROOTS`` (installed
    libraries); None when it does not resolve."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


_TORCH_COMPAT = "sklearn.externals.array_api_compat.torch"


def import_skops() -> Any:
    """``skops.io``, imported without importing torch when torch is not loaded yet.

    skops builds its trusted-type list at import with scikit-learn's ``all_estimators()``,
    whose package walk imports every subpackage of scikit-learn — among them the array-API
    shim for torch, which imports torch (seconds per process: every spawned tuning worker paid
    it). That shim holds no estimator, so while skops is imported it is replaced by an empty
    module without ``__path__`` (the walk neither imports nor enters it) and removed again, so
    a later real use of the shim imports it normally. The trusted-type list is unchanged."""
    loaded_sio = sys.modules.get("skops.io")
    if loaded_sio is not None:
        return loaded_sio
    require("skops")
    import types

    stub = None
    if "torch" not in sys.modules and _TORCH_COMPAT not in sys.modules:
        stub = types.ModuleType(_TORCH_COMPAT)
        sys.modules[_TORCH_COMPAT] = stub
    try:
        import skops.io as sio
    finally:
        if stub is not None and sys.modules.get(_TORCH_COMPAT) is stub:
            del sys.modules[_TORCH_COMPAT]
            parent = sys.modules.get(_TORCH_COMPAT.rpartition(".")[0])
            if parent is not None and getattr(parent, "torch", None) is stub:
                delattr(parent, "torch")
    return sio


def _estimators(obj: Any) -> list[Any]:
    """``obj`` and every estimator nested in it (Pipeline steps, ColumnTransformer parts,
    meta-estimators' ``estimator``), each once."""
    seen: dict[int, Any] = {}
    stack = [obj]
    while stack:
        est = stack.pop()
        if id(est) in seen or not hasattr(est, "get_params"):
            continue
        seen[id(est)] = est
        try:
            params = est.get_params(deep=False)
        except Exception:  # an estimator whose get_params fails: its own class still counts
            continue
        for value in params.values():
            if isinstance(value, (list, tuple)):  # Pipeline.steps, ColumnTransformer parts
                stack.extend(
                    v for item in value for v in (item if isinstance(item, tuple) else (item,))
                )
            else:
                stack.append(value)
    return list(seen.values())


def _distributions(module: str) -> list[str]:
    """The installed distributions that provide ``module``'s top-level package (none for
    the standard library or Strata itself, which is pinned anyway)."""
    root = module.partition(".")[0]
    if root in ("strata", "builtins", "__main__"):
        return []
    return list(_package_index().get(root, []))


_index: Mapping[str, list[str]] | None = None


def _package_index() -> Mapping[str, list[str]]:
    """Top-level package → distributions (reading every installed distribution's metadata
    takes ~0.2 s: once per process, or handed over by :func:`share_package_index`)."""
    global _index
    if _index is None:
        import importlib.metadata

        _index = importlib.metadata.packages_distributions()
    return _index


def share_package_index(index: Mapping[str, list[str]] | None = None) -> Any:
    """Without ``index``: this process's package index when it has read it, else None (for
    a worker process it starts). With it: adopt the index a parent process read — only for a
    process of the same interpreter and site-packages (a spawned worker), which then skips
    reading every installed distribution's metadata again."""
    global _index
    if index is None:
        return _index
    if _index is None:
        _index = {str(k): [str(d) for d in v] for k, v in index.items()}
    return _index


def allowed_type(name: str) -> bool:
    """Whether a type a skops file names may be rebuilt without ``trusted``: a class from
    ``SAFE_ROOTS`` or a numpy ufunc (``np.log1p`` in a FunctionTransformer), or one of
    ``SAFE_TYPES``. Functions are refused even from those libraries: a FunctionTransformer
    calls its ``func`` on every prediction, and ``builtins.eval`` or ``numpy.load`` there
    would run whatever the input says."""
    if name in SAFE_TYPES:
        return True
    if name.partition(".")[0] not in SAFE_ROOTS:
        return False
    obj = _resolve(name)
    if isinstance(obj, type):
        return True
    np_module = sys.modules.get("numpy")
    return np_module is not None and isinstance(obj, np_module.ufunc)


def load_skops(path: Path, name: str, *, trusted: bool) -> Any:
    """The object in a skops file; PermissionDenied naming the types that are not
    :func:`allowed_type` unless ``trusted``."""
    sio = import_skops()
    untrusted = sio.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if not allowed_type(t)]
    if unsafe and not trusted:
        raise PermissionDenied(
            f"{name} contains types Strata does not rebuild without trust ({', '.join(unsafe)}): "
            f"only classes of scikit-learn, numpy, scipy, LightGBM and XGBoost and numpy "
            f"ufuncs are; anything else (a function, a class of another package) may run its "
            f"code. Pass trusted=True to load it if you trust its source",
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

    def requirements(self, obj: Any) -> tuple[str, ...]:
        """scikit-learn's packages plus the distribution of every estimator inside ``obj``
        (a Pipeline's LightGBM step pins lightgbm) and what an estimator declares it needs
        at prediction time in ``strata_requirements`` (Strata's PyTorch estimators: torch;
        the text embedder: sentence-transformers and its model package)."""
        found: dict[str, None] = dict.fromkeys(self.packages)
        for est in _estimators(obj):
            found.update(dict.fromkeys(_distributions(type(est).__module__)))
            declared = getattr(est, "strata_requirements", ())
            if isinstance(declared, (tuple, list)):
                found.update(dict.fromkeys(str(d) for d in declared))
        return tuple(found)

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
            import_skops().dump(obj, path)
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
