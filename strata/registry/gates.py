"""Promotion gates: the candidate against the current holder of ``production``, on one
metric over one holdout dataset version, with :func:`strata.evaluate` (the training layer).

The dataset is checked first: a version without the gate's target column is refused with an
InvalidInput naming the dataset, the column and the columns it has — before any model runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput
from strata.registry.models import Gate, GateResult

if TYPE_CHECKING:
    from strata.registry.embedded import EmbeddedRegistry


def _evaluate(
    reg: EmbeddedRegistry, name: str, version: int, gate: Gate
) -> tuple[float, dict[str, Any]]:
    from strata.training.evaluate import evaluate

    report = evaluate(
        f"models:/{name}/{version}",
        data=gate.dataset,
        target=gate.target,
        metrics=[gate.metric],
        client=reg,
        shap_sample=0,  # the gate reads one metric: no SHAP explanation
    )
    metrics: dict[str, float] = dict(report.metrics)
    if gate.metric not in metrics:
        raise InvalidInput(
            f"Gate metric {gate.metric!r} was not computed for version {version} of {name!r}; "
            f"computed: {', '.join(sorted(metrics))}",
            details={"field": "metric"},
        )
    summary = {"rows": report.rows, "task": str(report.task), "metrics": metrics}
    return float(metrics[gate.metric]), summary


def check_dataset(reg: EmbeddedRegistry, gate: Gate) -> None:
    """InvalidInput naming the dataset and the target when the column is missing."""
    version = reg.data.get_version(gate.dataset)
    if gate.target not in version.column_names:
        raise InvalidInput(
            f"Gate dataset {gate.dataset!r} has no target column {gate.target!r}; its columns: "
            f"{', '.join(version.column_names)}",
            details={"field": "target", "dataset": gate.dataset, "target": gate.target},
        )


def run_gate(
    reg: EmbeddedRegistry, gate: Gate, name: str, candidate: int, holder: int | None
) -> GateResult:
    """Evaluate the candidate (and the holder, when there is one) and compare."""
    check_dataset(reg, gate)
    cand_value, cand_eval = _evaluate(reg, name, candidate, gate)
    evaluations: dict[str, Any] = {str(candidate): cand_eval}
    prod_value: float | None = None
    if holder is not None and holder != candidate:
        prod_value, evaluations[str(holder)] = _evaluate(reg, name, holder, gate)
    if prod_value is None:
        passed = not math.isnan(cand_value)
        message = (
            f"{gate.metric} = {cand_value:.6g} on {gate.dataset}; no production version to "
            "compare with"
        )
    else:
        if gate.higher_is_better:
            passed = cand_value >= prod_value - gate.threshold
            bound = f">= {prod_value:.6g} - {gate.threshold:g}"
        else:
            passed = cand_value <= prod_value + gate.threshold
            bound = f"<= {prod_value:.6g} + {gate.threshold:g}"
        message = (
            f"{gate.metric} on {gate.dataset}: candidate v{candidate} = {cand_value:.6g}, "
            f"production v{holder} = {prod_value:.6g}; needed {bound}: "
            + ("passed" if passed else "FAILED")
        )
    return GateResult(
        passed=passed,
        metric=gate.metric,
        dataset=gate.dataset,
        threshold=gate.threshold,
        higher_is_better=gate.higher_is_better,
        candidate_version=candidate,
        candidate_value=cand_value,
        production_version=holder if prod_value is not None else None,
        production_value=prod_value,
        message=message,
        evaluations=evaluations,
    )
