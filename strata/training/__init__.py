"""Training jobs, evaluation, explainability, fairness and HPO (issue 12; docs/training.md).

    import strata
    result = strata.train("train.yaml", ["model.params.n_estimators=50"])
    late = {"name": "late", "sql": "arr_delay > 15"}
    report = strata.evaluate(result.model_uri, data="flights@latest", target=late,
                             sensitive=["carrier"])

Names load on first use (PEP 562), so ``strata train --help`` does not import scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strata.training.config import load_config
    from strata.training.evaluate import evaluate
    from strata.training.job import train
    from strata.training.models import (
        EvaluationReport,
        ReproduceResult,
        TrainConfig,
        TrainResult,
        TuneResult,
    )

_HOMES: dict[str, str] = {
    "load_config": "strata.training.config",
    "evaluate": "strata.training.evaluate",
    "train": "strata.training.job",
    **dict.fromkeys(
        ("EvaluationReport", "ReproduceResult", "TrainConfig", "TrainResult", "TuneResult"),
        "strata.training.models",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'strata.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "EvaluationReport",
    "ReproduceResult",
    "TrainConfig",
    "TrainResult",
    "TuneResult",
    "evaluate",
    "load_config",
    "train",
]
