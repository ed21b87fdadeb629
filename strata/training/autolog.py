"""``strata.autolog()``: params, a training score and the model of every ``fit`` of a
scikit-learn estimator (including Pipelines), LightGBM's and XGBoost's scikit-learn wrappers,
with no extra code.

``fit`` is wrapped on each estimator class (scikit-learn's ``all_estimators()`` plus the
boosters' wrappers). Only the outermost ``fit`` is logged (a Pipeline, not its steps; a
search, not its candidates). Inside an active run it logs into that run; otherwise it starts
a run named after the estimator and ends it when ``fit`` returns (FAILED when it raises).
Logged: ``get_params(deep=True)`` values that are plain scalars (params a run already has
with another value are skipped, not overwritten: params are immutable), ``training_score``
(the estimator's own ``score`` on the training data), tag ``strata.autolog.estimator`` and,
with ``log_models``, the fitted estimator via ``strata.log_model`` with its first rows as the
input example. A logging failure is a warning: it never breaks the user's ``fit``.
``autolog(disable=True)`` restores the original methods. PyTorch loops: see
:mod:`strata.training.autolog_torch`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

_log = logging.getLogger("strata.autolog")
_state = threading.local()
_patched: dict[type, Callable[..., Any]] = {}
_options: dict[str, bool] = {"log_models": True}


def _classes() -> list[type]:
    import warnings

    from sklearn.utils import all_estimators

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = [cls for _, cls in all_estimators()]
    from sklearn.pipeline import Pipeline

    found.append(Pipeline)
    for module, names in (
        ("lightgbm", ("LGBMClassifier", "LGBMRegressor", "LGBMRanker")),
        ("xgboost", ("XGBClassifier", "XGBRegressor", "XGBRanker")),
    ):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if hasattr(mod, n)]
    owners: dict[type, None] = {}  # the class that defines each one's fit, in order
    for cls in found:
        for klass in cls.__mro__:
            if "fit" in vars(klass):
                owners[klass] = None
                break
    return list(owners)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _after_fit(est: Any, X: Any, y: Any) -> None:
    from strata.core.errors import StrataError
    from strata.tracking import fluent

    run = fluent.current_run()
    params = {k: v for k, v in est.get_params(deep=True).items() if _plain(v) and len(str(k)) < 250}
    known = run.tracking.get_run(run.run_id).params
    fresh = {k: v for k, v in params.items() if k not in known}
    try:
        if fresh:
            fluent.log_params(fresh)
        fluent.set_tag("strata.autolog.estimator", f"{type(est).__module__}.{type(est).__name__}")
        if y is not None and hasattr(est, "score"):
            fluent.log_metric("training_score", float(est.score(X, y)))
        if _options["log_models"]:
            import strata.models as sm

            example = X.iloc[:5] if hasattr(X, "iloc") else X[:5]
            sm.log_model(est, "model", input_example=example)
    except (StrataError, ValueError, TypeError) as exc:
        _log.warning("strata.autolog: could not log %s: %s", type(est).__name__, exc)


def _wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(orig)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "depth", 0) > 0 or not (args or "X" in kwargs):
            return orig(self, *args, **kwargs)
        X = args[0] if args else kwargs["X"]
        y = args[1] if len(args) > 1 else kwargs.get("y")
        from strata.tracking import fluent
        from strata.tracking.models import RunStatus

        _state.depth = 1
        started = None
        try:
            if fluent.active_run() is None:
                started = fluent.start_run(run_name=type(self).__name__)
            result = orig(self, *args, **kwargs)
            _after_fit(self, X, y)
        except BaseException:
            if started is not None:
                fluent.end_run(RunStatus.FAILED)
            raise
        finally:
            _state.depth = 0
        if started is not None:
            fluent.end_run()
        return result

    fit._strata_autolog = True  # type: ignore[attr-defined]
    return fit


def autolog(
    *,
    log_models: bool = True,
    disable: bool = False,
    pytorch: bool | None = None,
    log_every_n_steps: int = 10,
) -> None:
    """Log every top-level ``fit`` (see the module docstring); ``disable=True`` undoes it.
    Calling it again only changes ``log_models``.

    User-written PyTorch loops are logged too (``strata.training.autolog_torch``: optimizer
    and model params, ``train_loss`` every ``log_every_n_steps`` optimizer steps, the model
    when the run ends) when torch is already imported, or always with ``pytorch=True``
    (``pytorch=False``: never). Importing torch costs seconds, so it is not imported for it."""
    import sys

    _options["log_models"] = log_models
    if (disable or pytorch is False) and "strata.training.autolog_torch" in sys.modules:
        from strata.training import autolog_torch

        autolog_torch.disable()
    if not disable and (pytorch or (pytorch is None and "torch" in sys.modules)):
        from strata.training import autolog_torch

        autolog_torch.enable(log_models=log_models, every=log_every_n_steps)
    if disable:
        for cls, orig in _patched.items():
            cls.fit = orig  # type: ignore[attr-defined]
        _patched.clear()
        return
    if _patched:
        return
    for cls in _classes():
        orig = vars(cls)["fit"]
        if getattr(orig, "_strata_autolog", False):
            continue
        _patched[cls] = orig
        cls.fit = _wrap(orig)  # type: ignore[attr-defined]
