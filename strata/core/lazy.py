"""Names a package exports but imports on first use (PEP 562): importing the package, or one
light submodule of it, does not load the heavy modules its other names live in."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``module``: ``homes`` maps each exported name to the module that
    defines it, imported when the name is first read; the value is then kept on ``module``.

    ``__getattr__ = lazy_attributes(__name__, {"validate": "pkg.engine", ...})``; import the
    same names under ``TYPE_CHECKING`` so type checkers see them.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
