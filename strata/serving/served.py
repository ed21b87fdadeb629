"""One loaded model version, ready to answer: signature checks, predictions and probabilities
in one call, warm-up with the input example, the runtime chosen.

Loading goes through :func:`strata.models.load` (every file's digest checked; ``models:/``
versions against the sha256 pinned at registration), with the tracking service the server
was given, so a ``strata serve`` pointed at a remote Strata loads from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.models.flavors.base import BoosterPredictor
from strata.models.model import Model, to_flavor_input
from strata.models.signature import enforce
from strata.serving.models import ModelRef, Runtime

if TYPE_CHECKING:
    from strata.models.flavors.base import Predictor
    from strata.registry.service import RegistryService
    from strata.serving.batching import Batcher
    from strata.tracking.service import TrackingService


@dataclass
class Prediction:
    """What a predict returns: one prediction per row, and class probabilities (columns in
    ``labels`` order) for a classifier."""

    prediction: np.ndarray
    proba: np.ndarray | None = None
    labels: list[Any] | None = None


@dataclass
class ServedModel:
    """A model version loaded in this worker."""

    name: str
    version: str
    model: Model
    runtime: str = "native"
    loaded_at: float = field(default_factory=time.time)
    warm_ms: float | None = None
    batcher: Batcher | None = field(default=None, repr=False, compare=False)
    """This version's adaptive batching queue (made by the router on first use; it goes
    with the version when a swap drops it)."""

    def __post_init__(self) -> None:
        self.predictor: Predictor = self.model.runtime(self.runtime)  # type: ignore[arg-type]
        self.signature = self.model.signature
        self.labels = self.model.labels
        self._as_matrix = (
            self.predictor.input_kind == "matrix"
            and self.signature is not None
            and not self.signature.is_tensor
            and len(self.signature.input_names()) > 0
        )
        # Boosters label by argmax of their probabilities (BoosterPredictor): one call gives
        # both; other classifiers are called twice so labels stay exactly theirs.
        self._proba_gives_labels = (
            self.labels is not None
            and isinstance(self.predictor, BoosterPredictor)
            and self.predictor.classes is not None
        )

    @property
    def input_names(self) -> list[str]:
        return [] if self.signature is None else self.signature.input_names()

    @property
    def is_classifier(self) -> bool:
        return self.labels is not None

    def check(self, columns: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """The inputs checked against the signature (InvalidInput naming the column)."""
        if self.signature is None:
            raise InvalidInput(
                f"Model {self.name!r} version {self.version} has no signature, so its inputs "
                "cannot be checked; log it with an input example to serve it",
                details={"model": self.name, "version": self.version},
            )
        return enforce(self.signature, columns)

    def predict(self, checked: dict[str, np.ndarray]) -> Prediction:
        """Predict on columns returned by :meth:`check`."""
        assert self.signature is not None
        x = self._matrix(checked) if self._as_matrix else None
        if x is None:
            x = to_flavor_input(self.predictor, self.signature, checked)
        if self.labels is None:
            return Prediction(np.asarray(self.predictor.predict(x)))
        proba = np.asarray(self.predictor.predict_proba(x), dtype=np.float64)
        if self._proba_gives_labels:
            classes = self.predictor.classes
            assert classes is not None
            labels = np.asarray(classes[np.argmax(proba, axis=1)])
        else:
            labels = np.asarray(self.predictor.predict(x))
        return Prediction(labels, proba, self.labels)

    def _matrix(self, checked: dict[str, np.ndarray]) -> np.ndarray | None:
        """The float matrix a booster or estimator takes, in signature order, as
        ``to_flavor_input`` builds it but cheaper: the columns of one OIP ``[n, k]`` tensor
        are viewed as that tensor again (no copy); others are copied column by column into
        one array. None when a column is not float (the general path converts it)."""
        cols = list(checked.values())
        first = cols[0]
        step = first.itemsize
        if (
            first.dtype == np.float64
            and first.ndim == 1
            and first.strides == (step * len(cols),)
            and all(
                c.dtype == np.float64
                and c.strides == first.strides
                and c.ctypes.data == first.ctypes.data + i * step
                for i, c in enumerate(cols)
            )
        ):  # the columns of one row-major matrix, in order: view it whole
            return np.lib.stride_tricks.as_strided(
                first,
                shape=(len(first), len(cols)),
                strides=(first.strides[0], step),
                writeable=False,
            )
        if any(c.dtype.kind != "f" for c in cols):
            return None
        x = np.empty((len(first), len(cols)), dtype=np.float64)
        for i, c in enumerate(cols):
            x[:, i] = c
        return x

    def example(self) -> dict[str, np.ndarray] | None:
        example = self.model.input_example()
        if example is None:
            return None
        if isinstance(example, np.ndarray):
            assert self.signature is not None
            return {self.signature.inputs[0].name: example}
        return example

    def warm(self) -> None:
        """Predict on the input example a few times (first calls allocate and JIT)."""
        example = self.example()
        if example is None:
            return
        start = time.perf_counter()
        checked = self.check(example)
        for _ in range(3):
            self.predict(checked)
        one = {k: v[:1] for k, v in checked.items()}
        for _ in range(3):
            self.predict(one)
        self.warm_ms = (time.perf_counter() - start) * 1000


def _timed(served: ServedModel, checked: dict[str, np.ndarray]) -> float:
    start = time.perf_counter()
    for _ in range(20):
        served.predict(checked)
    return time.perf_counter() - start


def load_served(
    ref: ModelRef,
    *,
    tracking: TrackingService,
    registry: RegistryService | None,
    version: str | None = None,
    runtime: Runtime = "native",
    trusted: bool = False,
) -> ServedModel:
    """Load and warm the version ``ref`` names now (``version`` pins one: what an alias
    resolved to). ``runtime="auto"`` times native and ONNX on the example and keeps the
    faster; ``onnx`` needs the version's ONNX export (InvalidInput otherwise)."""
    from strata.models.tracked import load

    if ref.registered and version is None:
        version = resolve_version(ref, registry)
    uri = ref.uri(version)
    model = load(uri, trusted=trusted, tracking=tracking)
    label = version if version is not None else (ref.run_id or model.spec.run_id or "local")
    chosen = "native" if runtime == "auto" else runtime
    served = ServedModel(ref.name, label, model, runtime=chosen)
    served.warm()
    if runtime == "auto" and "onnx" in model.spec.flavors:
        example = served.example()
        if example is not None:
            onnx = ServedModel(ref.name, label, model, runtime="onnx")
            onnx.warm()
            checked = served.check({k: v[:1] for k, v in example.items()})
            if _timed(onnx, checked) < _timed(served, checked):
                served = onnx
    return served


def resolve_version(ref: ModelRef, registry: RegistryService | None) -> str:
    """The registry version ``ref`` names now (an alias's current version)."""
    if ref.version is not None:
        return ref.version
    if registry is None:
        raise InvalidInput(f"{ref.text} needs the model registry", details={"field": "model"})
    if ref.alias is None:
        latest = registry.get_model(ref.name).latest_version
        if latest is None:
            from strata.core.errors import NotFound

            raise NotFound(f"Model {ref.name!r} has no versions yet", details={"name": ref.name})
        return str(latest)
    return str(registry.get_version_by_alias(ref.name, ref.alias).version)
