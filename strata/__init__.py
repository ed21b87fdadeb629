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

__all__ = [
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
    "load_settings",
]
