"""Strata: the whole machine-learning lifecycle in one package.

``__all__`` is the public SDK surface.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from strata.core.lazy import lazy_attributes

if TYPE_CHECKING:
    from strata.client import Client
    from strata.core.config import Settings, load_settings
    from strata.core.errors import (
        AlreadyExists,
        Conflict,
        InvalidInput,
        NotFound,
        PermissionDenied,
        StrataError,
        Unauthenticated,
        Unavailable,
    )
    from strata.models.tracked import log_model
    from strata.tracking.fluent import (
        ActiveRun,
        active_run,
        end_run,
        flush,
        log_artifact,
        log_artifacts,
        log_dict,
        log_figure,
        log_input,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_table,
        log_text,
        set_experiment,
        set_tag,
        set_tags,
        start_run,
    )
    from strata.training.autolog import autolog
    from strata.training.evaluate import evaluate
    from strata.training.job import train

# Where each public name lives. They load on first use, so `import strata` (and with it the
# `strata` command's startup) does not pay for SQLAlchemy, pandas or pyarrow up front.
_ERRORS = (
    "AlreadyExists Conflict InvalidInput NotFound PermissionDenied StrataError Unauthenticated "
    "Unavailable"
)
_FLUENT = (
    "ActiveRun active_run end_run flush log_artifact log_artifacts log_dict log_figure log_input "
    "log_metric log_metrics log_param log_params log_table log_text set_experiment set_tag "
    "set_tags start_run"
)
_HOMES: dict[str, str] = {
    "Client": "strata.client",
    "Settings": "strata.core.config",
    "load_settings": "strata.core.config",
    **dict.fromkeys(_ERRORS.split(), "strata.core.errors"),
    **dict.fromkeys(_FLUENT.split(), "strata.tracking.fluent"),
    "log_model": "strata.models.tracked",
    "autolog": "strata.training.autolog",
    "evaluate": "strata.training.evaluate",
    "train": "strata.training.job",
}


__getattr__ = lazy_attributes(__name__, _HOMES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ActiveRun",
    "AlreadyExists",
    "Client",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "Settings",
    "StrataError",
    "Unauthenticated",
    "Unavailable",
    "__version__",
    "active_run",
    "autolog",
    "end_run",
    "evaluate",
    "flush",
    "load_settings",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "set_experiment",
    "set_tag",
    "set_tags",
    "start_run",
    "train",
]
