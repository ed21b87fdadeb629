"""Strata: the whole machine-learning lifecycle in one package.

``__all__`` is the public SDK surface.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
    "end_run",
    "flush",
    "load_settings",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "set_experiment",
    "set_tag",
    "set_tags",
    "start_run",
]
