"""Reading a training config: YAML file, mapping or TrainConfig, plus ``--set`` overrides.

``KEY=VALUE`` overrides use dotted paths (``model.params.n_estimators=50``); the value is
read as a YAML scalar or flow collection (``50`` is an int, ``[a, b]`` a list, ``'50'`` a
string). Everything is validated once, here: an unknown key is named with its close matches.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from strata.core.errors import InvalidInput, NotFound
from strata.training.models import TrainConfig, config_error

MAX_CONFIG_BYTES = 1 << 20


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"a.b=1"`` → (["a", "b"], 1); InvalidInput naming the item otherwise."""
    import yaml

    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise InvalidInput(
            f"--set {item!r} must look like KEY=VALUE with a dotted KEY "
            "(e.g. model.params.n_estimators=50)",
            details={"field": "set", "received": item},
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [p.strip() for p in parts], value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``KEY=VALUE`` set at its dotted path."""
    out = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_set(item)
        node: Any = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif isinstance(nxt, str) and part == "target":  # target: late → {name: late}
                nxt = node[part] = {"name": nxt}
            elif not isinstance(nxt, dict):
                where = ".".join(path[: i + 1])
                raise InvalidInput(
                    f"--set {item!r}: {where} is {type(nxt).__name__} ({nxt!r}), not a mapping",
                    details={"field": where},
                )
            node = nxt
        node[path[-1]] = value
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise NotFound(f"Config file {str(p)!r} does not exist", details={"path": str(p)})
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInput(
            f"Config file {str(p)!r} is larger than {MAX_CONFIG_BYTES} bytes",
            details={"path": str(p)},
        )
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(
            f"Config file {str(p)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            details={"path": str(p)},
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(
            f"Config file {str(p)!r} is not UTF-8 text", details={"path": str(p)}
        ) from None
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"Config file {str(p)!r} must hold a mapping (experiment:, data:, target:, ...), "
            f"got {type(doc).__name__}",
            details={"path": str(p)},
        )
    return doc


def load_config(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    **fields: Any,
) -> TrainConfig:
    """The validated config from a TrainConfig, a mapping or a YAML path, with ``overrides``
    (``KEY=VALUE``) and then keyword ``fields`` applied. Raises InvalidInput naming the key."""
    if isinstance(config, TrainConfig):
        raw = config.model_dump(mode="json", exclude_unset=True)
    elif isinstance(config, Mapping):
        raw = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        raw = read_yaml(config)
    else:
        raise InvalidInput(
            f"config must be a TrainConfig, a mapping or a YAML path, got {type(config).__name__}",
            details={"field": "config"},
        )
    raw = apply_overrides(raw, overrides)
    raw.update(fields)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc) from None
