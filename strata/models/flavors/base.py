"""What a flavor is: how one framework's model is written, read and called.

A :class:`Flavor` writes the object's files into the model directory and returns the
:class:`~strata.models.models.FlavorSpec` recorded in ``strata-model.yaml``; it reads them
back as a :class:`Predictor`, the one thing :class:`~strata.models.model.Model` calls. A
predictor declares the input it wants (``input_kind``): a float matrix in the signature's
column order (LightGBM, XGBoost: no pandas on the hot path), a pandas DataFrame (estimators
fitted on named columns), the checked columns as a dict of arrays (ONNX graphs with one input
per column) or the tensor itself.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from strata.core.errors import InvalidInput, PermissionDenied
from strata.models.models import FlavorSpec

InputKind = Literal["matrix", "frame", "tensor", "columns"]


class Predictor(ABC):
    """A loaded flavor, ready to predict."""

    input_kind: InputKind = "matrix"
    classes: np.ndarray | None = None
    """The class labels, in the order of :meth:`predict_proba`'s columns (classifiers)."""

    @abstractmethod
    def predict(self, x: Any) -> np.ndarray:
        """Predictions for ``x`` (shaped as ``input_kind`` says), one per row."""

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities, one row per input row and one column per class."""
        raise InvalidInput(
            "This model is not a classifier with probabilities (its signature has no labels)",
            details={"field": "predict_proba"},
        )


class Flavor(ABC):
    """One framework's way of saving and loading models."""

    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]
    """Distributions the flavor needs at load time, pinned into the model's requirements."""
    saves: ClassVar[str] = ""
    """The objects ``save`` takes, for error messages ("" for a flavor made another way)."""
    option_names: ClassVar[tuple[str, ...]] = ()
    """The ``flavor_options`` keys ``save`` accepts for this flavor."""

    def requirements(self, obj: Any) -> tuple[str, ...]:
        """The distributions loading ``obj`` needs (pinned into the model's requirements):
        the flavor's ``packages``; a flavor whose objects hold other libraries' objects (a
        Pipeline) adds theirs."""
        return self.packages

    @abstractmethod
    def handles(self, obj: Any) -> bool:
        """Whether ``obj`` is a model of this flavor (without importing the framework when
        the object cannot be one of its models)."""

    @abstractmethod
    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        """Write ``obj``'s files into ``directory``; the spec to record. ``options`` are
        the caller's ``flavor_options`` (only keys in :attr:`option_names` reach here)."""

    @abstractmethod
    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        """Read the files written by :meth:`save` (their digests are already verified)."""


def loaded(module: str) -> Any:
    """The module if it is imported already, else None: a model object of a framework
    implies the framework is imported, so checking costs no import."""
    return sys.modules.get(module)


def dist_version(*names: str) -> str | None:
    """The installed version of the first of ``names`` that is installed (read once per
    process: every save pins a handful, ~5 ms each from the metadata files)."""
    return _dist_version(names)


@functools.cache
def _dist_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def require(module: str, extra: str = "models") -> Any:
    """Import a framework, or say which extra installs it."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise InvalidInput(
            f"This model needs the Python package {module!r}, which is not installed: "
            f"pip install 'strata-ml[{extra}]'",
            details={"package": module},
        ) from exc


def refuse_untrusted(what: str, serialization: str, action: str) -> PermissionDenied:
    """The error for pickle-like formats used without ``trusted=True``."""
    return PermissionDenied(
        f"Refusing to {action} {what} as {serialization}: {serialization} runs arbitrary code "
        f"when the model is loaded, so anyone who can change the file can run code on the "
        f"machine that loads it. Pass trusted=True to {action} it if you trust its source, "
        f"or use the default safe format",
        details={"serialization": serialization, "trusted": False},
    )


class BoosterPredictor(Predictor):
    """A gradient-boosting booster called on the float matrix; a classifier keeps its classes
    so labels and probabilities match its scikit-learn wrapper's (one output column: the
    positive class's probability, labelled by > 0.5; several: argmax)."""

    def __init__(self, booster: Any, kind: str, classes: list[Any] | None) -> None:
        self.booster = booster
        self.kind = kind
        self.classes = np.asarray(classes) if classes is not None else None

    @abstractmethod
    def raw(self, x: Any) -> np.ndarray:
        """The booster's own prediction: values, or probabilities for a classifier."""

    def predict(self, x: Any) -> np.ndarray:
        out = self.raw(x)
        if self.classes is None:
            return np.asarray(out)
        if out.ndim == 1:
            return np.asarray(self.classes[(out > 0.5).astype(np.intp)])
        return np.asarray(self.classes[np.argmax(out, axis=1)])

    def predict_proba(self, x: Any) -> np.ndarray:
        if self.classes is None:
            return super().predict_proba(x)
        out = np.asarray(self.raw(x), dtype=np.float64)
        return np.column_stack([1.0 - out, out]) if out.ndim == 1 else out


def booster_options(obj: Any, classifier: type, wrapper: type) -> dict[str, Any]:
    """What a wrapper adds to its booster: ``kind`` and, for a classifier, its classes."""
    if isinstance(obj, classifier):
        classes: Any = getattr(obj, "classes_")  # noqa: B009  (the wrapper defines it)
        return {"kind": "classifier", "classes": [plain(c) for c in classes]}
    if isinstance(obj, wrapper):
        return {"kind": "regressor"}
    return {"kind": "booster"}


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value YAML can hold."""
    return value.item() if isinstance(value, np.generic) else value
