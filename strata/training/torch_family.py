"""The ``pytorch`` family: scikit-learn estimators around a PyTorch module, so the job's
Pipeline (``prep`` → ``model``) holds the preprocessing and the network together.

- :class:`TorchMLPClassifier` / :class:`TorchMLPRegressor`: a multilayer perceptron for
  tabular rows (``hidden_layers``, ReLU, ``dropout``), Strata's own code. Saved with skops
  as plain data (the weights as numpy arrays, the layer sizes as numbers); the models layer
  rebuilds these two classes without ``trusted`` (``SAFE_TYPES`` of the sklearn flavor):
  rebuilding them runs no code named by the file.
- :class:`TorchModuleClassifier` / :class:`TorchModuleRegressor`: the user's
  ``torch.nn.Module`` by import path (``model.module: mypkg.nets.Net``), called as
  ``Net(n_inputs, n_outputs, **module_kwargs)``. Importing it runs its code, so the config
  needs ``model.trusted: true`` and the saved model loads only with ``trusted=True``.

The loop (Adam, early stopping, checkpoints every ``checkpoint_every`` steps, resumption)
is :mod:`strata.training.torch_loop`. Regression targets are standardized for training and
mapped back. Torch is imported when a model is fitted or used, never at import.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from strata.core.errors import InvalidInput
from strata.training.torch_loop import Checkpointer, LoopSettings, fit_module

#: Fitted state kept by skops (everything else is a constructor parameter).
_FITTED = (
    "weights_",
    "n_features_in_",
    "n_outputs_",
    "classes_",
    "y_mean_",
    "y_std_",
    "train_loss_",
    "val_loss_",
    "best_epoch_",
    "stopped_early_",
    "steps_",
)


def mlp(n_inputs: int, n_outputs: int, hidden_layers: Any, dropout: float) -> Any:
    import torch

    layers: list[Any] = []
    width = n_inputs
    for size in hidden_layers:
        layers += [torch.nn.Linear(width, int(size)), torch.nn.ReLU()]
        if dropout:
            layers.append(torch.nn.Dropout(float(dropout)))
        width = int(size)
    layers.append(torch.nn.Linear(width, n_outputs))
    return torch.nn.Sequential(*layers)


class _TorchEstimator(BaseEstimator):  # type: ignore[misc]
    """Shared by the four estimators: the loop's settings as parameters, the fitted module
    kept as numpy weights (what skops stores) and rebuilt on first use."""

    checkpointer: Checkpointer | None = None
    """Set by the job before ``fit`` (never saved): where checkpoints go."""
    strata_requirements = ("torch",)
    """What predicting needs beyond scikit-learn: pinned into the saved model's requirements."""

    def __init__(
        self,
        hidden_layers: Any = (64, 32),
        dropout: float = 0.1,
        epochs: int = 20,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        min_delta: float = 0.0,
        validation_fraction: float = 0.1,
        checkpoint_every: int = 100,
        random_state: int = 0,
        distributed_workers: int = 1,
    ) -> None:
        self.hidden_layers = hidden_layers
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_delta = min_delta
        self.validation_fraction = validation_fraction
        self.checkpoint_every = checkpoint_every
        self.random_state = random_state
        self.distributed_workers = distributed_workers

    # -- what subclasses decide -------------------------------------------------------
    def _build(self, n_inputs: int, n_outputs: int) -> Any:
        return mlp(n_inputs, n_outputs, self.hidden_layers, self.dropout)

    def _builder(self, n_inputs: int, n_outputs: int) -> Any:
        """A picklable callable building the module (for distributed workers)."""
        hidden = [int(v) for v in self.hidden_layers]
        return functools.partial(mlp, n_inputs, n_outputs, hidden, float(self.dropout))

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, int, Any]:
        raise NotImplementedError  # each subclass defines its targets and loss

    # -- fit / use ----------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> _TorchEstimator:
        import torch

        X = self._matrix(X)
        settings = LoopSettings(
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay),
            patience=int(self.patience),
            min_delta=float(self.min_delta),
            validation_fraction=float(self.validation_fraction),
            checkpoint_every=int(self.checkpoint_every),
            seed=int(self.random_state),
        )
        target, n_outputs, loss_fn = self._targets(np.asarray(y))
        torch.manual_seed(settings.seed)
        module = self._build(X.shape[1], n_outputs)
        if int(self.distributed_workers) > 1:
            from strata.training.torch_ddp import fit_module_ddp

            result = fit_module_ddp(
                self._builder(X.shape[1], n_outputs),
                X,
                target,
                loss_fn,
                settings,
                int(self.distributed_workers),
            )
            module.load_state_dict(result.state)
            self.distributed_ = f"ray-train:gloo:{int(self.distributed_workers)}"
        else:
            result = fit_module(module, X, target, loss_fn, settings, self.checkpointer)
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = n_outputs
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in result.state.items()}
        self.train_loss_ = [float(v) for v in result.train_loss]
        self.val_loss_ = [float(v) for v in result.val_loss]
        self.best_epoch_ = int(result.best_epoch)
        self.stopped_early_ = bool(result.stopped_early)
        self.steps_ = int(result.steps)
        self.resumed_from_step_ = result.resumed_from_step
        self._module = module.eval()
        return self

    @staticmethod
    def _matrix(X: Any) -> np.ndarray:
        values = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float32)
        if values.ndim != 2:
            raise InvalidInput(
                f"The PyTorch family takes a 2-D matrix of numbers; got {values.ndim} dimensions",
                details={"field": "X"},
            )
        return values

    def _forward(self, X: Any) -> np.ndarray:
        import torch

        module = getattr(self, "_module", None)
        if module is None:
            if not hasattr(self, "weights_"):
                raise InvalidInput(
                    f"This {type(self).__name__} is not fitted yet", details={"field": "model"}
                )
            module = self._build(int(self.n_features_in_), int(self.n_outputs_))
            state = {k: torch.from_numpy(np.array(v)) for k, v in self.weights_.items()}
            module.load_state_dict(state)
            self._module = module.eval()
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(self._matrix(X))))
        return np.asarray(out.detach().cpu().numpy(), dtype=np.float64)

    # -- what skops stores: parameters and plain fitted data, no torch objects ---------------
    def __getstate__(self) -> dict[str, Any]:
        params = self.get_params(deep=False)
        params["hidden_layers"] = [int(v) for v in params["hidden_layers"]]
        fitted = {k: getattr(self, k) for k in _FITTED if hasattr(self, k)}
        return {**params, **fitted}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state.pop("_sklearn_version", None)
        self.__dict__.update(state)


class _Classifying:
    classes_: np.ndarray

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, int, Any]:
        import torch

        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InvalidInput(
                "The PyTorch classifier needs at least two classes in its training rows",
                details={"field": "target"},
            )
        return codes.astype(np.int64), len(self.classes_), torch.nn.CrossEntropyLoss()

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self._forward(X)  # type: ignore[attr-defined]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])


class _Regressing:
    y_mean_: float
    y_std_: float

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, int, Any]:
        import torch

        values = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(values.mean())
        self.y_std_ = float(values.std()) or 1.0
        scaled = ((values - self.y_mean_) / self.y_std_).astype(np.float32).reshape(-1, 1)
        return scaled, 1, torch.nn.MSELoss()

    def predict(self, X: Any) -> np.ndarray:
        out = self._forward(X)[:, 0]  # type: ignore[attr-defined]
        return np.asarray(out * self.y_std_ + self.y_mean_)


class TorchMLPClassifier(_Classifying, ClassifierMixin, _TorchEstimator):  # type: ignore[misc]
    """A multilayer perceptron classifier (softmax over the classes, cross-entropy)."""


class TorchMLPRegressor(_Regressing, RegressorMixin, _TorchEstimator):  # type: ignore[misc]
    """A multilayer perceptron regressor (standardized target, mean squared error)."""


class _UserModule(_TorchEstimator):
    def __init__(
        self,
        module: str = "",
        module_kwargs: dict[str, Any] | None = None,
        epochs: int = 20,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        min_delta: float = 0.0,
        validation_fraction: float = 0.1,
        checkpoint_every: int = 100,
        random_state: int = 0,
        distributed_workers: int = 1,
    ) -> None:
        self.module = module
        self.module_kwargs = module_kwargs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_delta = min_delta
        self.validation_fraction = validation_fraction
        self.checkpoint_every = checkpoint_every
        self.random_state = random_state
        self.distributed_workers = distributed_workers

    def __getstate__(self) -> dict[str, Any]:
        fitted = {k: getattr(self, k) for k in _FITTED if hasattr(self, k)}
        return {**self.get_params(deep=False), **fitted}

    def _builder(self, n_inputs: int, n_outputs: int) -> Any:
        kwargs = dict(self.module_kwargs or {})
        return functools.partial(build_user_module, self.module, n_inputs, n_outputs, kwargs)

    def _build(self, n_inputs: int, n_outputs: int) -> Any:
        return build_user_module(self.module, n_inputs, n_outputs, dict(self.module_kwargs or {}))


def build_user_module(path: str, n_inputs: int, n_outputs: int, kwargs: dict[str, Any]) -> Any:
    cls = user_module_class(path)
    try:
        return cls(n_inputs, n_outputs, **kwargs)
    except TypeError as exc:
        raise InvalidInput(
            f"model.module {path!r} must accept (n_inputs, n_outputs, **module_kwargs): {exc}",
            details={"field": "model.module"},
        ) from None


def user_module_class(path: str) -> type:
    """The ``torch.nn.Module`` subclass at import path ``path`` (``pkg.mod.Class``).
    Importing runs the module's code: only for trusted configs and models."""
    import torch

    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr) if module_name else None
    except ImportError as exc:
        raise InvalidInput(
            f"model.module {path!r}: module {module_name!r} cannot be imported ({exc})",
            details={"field": "model.module"},
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise InvalidInput(
            f"model.module {path!r} is not a torch.nn.Module subclass (an import path such "
            "as mypkg.nets.TabularNet)",
            details={"field": "model.module"},
        )
    return cls


class TorchModuleClassifier(_Classifying, ClassifierMixin, _UserModule):  # type: ignore[misc]
    """The user's module as a classifier (its outputs are the classes' logits)."""


class TorchModuleRegressor(_Regressing, RegressorMixin, _UserModule):  # type: ignore[misc]
    """The user's module as a regressor (one output)."""
