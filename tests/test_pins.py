"""The peers the compatibility tests speak to are the versions pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirement(group: list[str], name: str) -> str:
    (spec,) = [r for r in group if re.match(rf"{name}\s*[=<>!~]", r)]
    return spec


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_the_mlflow_client_under_test_is_the_pinned_one() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    spec = _requirement(project["optional-dependencies"]["dev"], "mlflow")
    pinned = re.fullmatch(r"mlflow==([\d.]+)", spec)
    assert pinned, f"mlflow must be pinned exactly, found {spec!r}"
    assert version("mlflow") == pinned.group(1)


def test_fastapi_meets_its_lower_bound() -> None:
    """iter_route_contexts (used to walk every route) appeared in FastAPI 0.137.2."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    spec = _requirement(project["dependencies"], "fastapi")
    bound = re.fullmatch(r"fastapi>=([\d.]+)", spec)
    assert bound, f"fastapi needs a lower bound, found {spec!r}"
    assert _release(bound.group(1)) >= (0, 137, 2)
    assert _release(version("fastapi")) >= _release(bound.group(1))
    from fastapi.routing import iter_route_contexts

    assert callable(iter_route_contexts)
