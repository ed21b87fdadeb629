"""Adapters between MLflow's pyfunc and Strata's python_function flavor.

:class:`MlflowPythonModel` is the class ``import_mlflow`` stores (this file is copied into
the model's ``code/``) for an MLflow ``python_function`` model: it unpickles MLflow's
``python_model.pkl`` (cloudpickle: user code, hence ``trusted``) and calls its
``load_context`` / ``predict`` with an MLflow context. It needs mlflow where it loads, as the
pickled class subclasses ``mlflow.pyfunc.PythonModel``.

``LOADER`` is the ``loader_module`` ``export_mlflow`` writes for a python_function model:
``mlflow.pyfunc.load_model`` imports it from the export's ``code/`` and it loads the Strata
model (kept whole, digests and all, under ``strata_model/``) with ``strata.models.load``.
"""

from __future__ import annotations

from typing import Any


class MlflowPythonModel:
    """Runs an imported MLflow python_function model."""

    def load(self, context: Any) -> None:
        import cloudpickle
        import mlflow.pyfunc

        names = context.model_config.get("mlflow_artifacts", [])
        self._context = mlflow.pyfunc.PythonModelContext(
            artifacts={n: context.artifacts[n] for n in names},
            model_config=context.model_config.get("mlflow_model_config") or {},
        )
        with open(context.artifacts["python_model"], "rb") as fh:
            self._model = cloudpickle.load(fh)
        self._model.load_context(self._context)

    def predict(self, context: Any, inputs: Any) -> Any:
        return self._model.predict(self._context, inputs)


LOADER = '''"""Loads a Strata model for mlflow.pyfunc (written by strata.models.export_mlflow)."""


class _StrataModel:
    def __init__(self, model):
        self.model = model

    def predict(self, model_input, params=None):
        return self.model.predict(model_input)


def _load_pyfunc(path, model_config=None):
    import strata.models as sm

    # every file's digest is checked; the model holds code, exported with trusted=True
    return _StrataModel(sm.load(path, trusted=True))
'''
