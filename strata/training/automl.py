"""``strata automl``: several families times hyperparameter search within a time budget, then a
leaderboard — all of it recorded as runs.

One parent run (tag ``strata.training.kind: automl``) holds the leaderboard (artifact
``automl/leaderboard.json``, tags ``strata.automl.best_run_id``/``best_family``, metrics
``<family>.<metric>``); every trial is a training job tracked as its child run (tags
``strata.automl.family``, ``strata.automl.trial``), with the config's data, target, split,
CV and metrics and the family's model and sampled parameters. The budget is split evenly
among the families still to search (time one family leaves unused goes to the next); an
Optuna study (TPE, seeded, in memory) per family starts trials only while its share lasts, so
the whole run ends about one trial after the budget. Trials run without the evaluation report
(for speed): evaluate the winner with ``strata evaluate``.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from strata.core.errors import InvalidInput
from strata.training.config import load_config
from strata.training.evaluate import Services, default_services
from strata.training.models import SpaceParam, Task, TrainConfig, TuneConfig

#: Family name → (model config per task, search space). Spaces use tune's grammar.
FAMILIES: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "model": {"family": "lightgbm"},
        "space": {
            "learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
            "num_leaves": {"type": "int", "low": 8, "high": 127},
            "n_estimators": {"type": "int", "low": 50, "high": 300},
            "min_child_samples": {"type": "int", "low": 5, "high": 100},
        },
    },
    "xgboost": {
        "model": {"family": "xgboost"},
        "space": {
            "learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
            "max_depth": {"type": "int", "low": 3, "high": 10},
            "n_estimators": {"type": "int", "low": 50, "high": 300},
            "subsample": {"type": "float", "low": 0.6, "high": 1.0},
        },
    },
    "random_forest": {
        "model": {
            "family": "sklearn",
            "estimator": {
                "classification": "sklearn.ensemble.RandomForestClassifier",
                "regression": "sklearn.ensemble.RandomForestRegressor",
            },
            "params": {"n_jobs": 1},
        },
        "space": {
            "n_estimators": {"type": "int", "low": 50, "high": 200},
            "max_depth": {"type": "int", "low": 3, "high": 20},
            "min_samples_leaf": {"type": "int", "low": 1, "high": 20},
        },
    },
    "linear": {
        "model": {
            "family": "sklearn",
            "estimator": {
                "classification": "sklearn.linear_model.LogisticRegression",
                "regression": "sklearn.linear_model.Ridge",
            },
            "params": {"classification": {"max_iter": 1000}, "regression": {}},
        },
        "space": {
            "classification": {"C": {"type": "float", "low": 0.001, "high": 10.0, "log": True}},
            "regression": {"alpha": {"type": "float", "low": 0.001, "high": 100.0, "log": True}},
        },
    },
    "pytorch": {
        "model": {"family": "pytorch", "params": {"epochs": 20, "patience": 3}},
        "space": {
            "learning_rate": {"type": "float", "low": 0.0005, "high": 0.02, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.3},
            "batch_size": {"type": "categorical", "choices": [128, 256, 512]},
        },
    },
}
DEFAULT_FAMILIES = ("lightgbm", "xgboost", "random_forest", "linear")
TAG_FAMILY = "strata.automl.family"
TAG_TRIAL = "strata.automl.trial"


class LeaderboardEntry(BaseModel):
    family: str
    run_id: str
    value: float
    params: dict[str, Any]
    trials: int


class AutomlResult(BaseModel):
    parent_run_id: str
    metric: str
    direction: str
    best_run_id: str | None
    best_family: str | None
    leaderboard: list[LeaderboardEntry]
    trials: int
    seconds: float


def parse_budget(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1.5h``; InvalidInput otherwise."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
        if m is None:
            raise InvalidInput(
                f"--time-budget {text!r}: expected a duration such as 90s, 10m or 1h",
                details={"field": "time_budget"},
            )
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not 1 <= seconds <= 7 * 24 * 3600:
        raise InvalidInput(
            f"--time-budget must be between 1 second and 7 days, got {seconds:g} s",
            details={"field": "time_budget"},
        )
    return seconds


def _per_task(value: Any, task: Task) -> Any:
    if isinstance(value, dict) and set(value) <= {"classification", "regression"} and value:
        return value.get(task.value)
    return value


def _family_model(name: str, task: Task) -> tuple[dict[str, Any], dict[str, SpaceParam]]:
    spec = FAMILIES[name]
    model = {k: _per_task(v, task) for k, v in spec["model"].items()}
    model["params"] = dict(_per_task(model.get("params") or {}, task) or {})
    space = _per_task(spec["space"], task)
    return model, {k: SpaceParam.model_validate(v) for k, v in space.items()}


def automl(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    time_budget: float | str = 600,
    families: Sequence[str] | None = None,
    client: Services | None = None,
) -> AutomlResult:
    """Search ``families`` (default: lightgbm, xgboost, random_forest, linear) within
    ``time_budget`` (seconds or ``10m``); see the module docstring. The config's ``model``
    and ``tune.space`` are replaced per family; ``tune.metric``/``direction`` (or the
    defaults of ``strata tune``) choose the objective. Raises InvalidInput naming an unknown
    family, a bad budget or metric."""
    import optuna

    from strata.tracking import fluent
    from strata.training.dataset import load_table, prepare
    from strata.training.job import train
    from strata.training.study import _set_path, _suggest, objective_metric

    budget = parse_budget(time_budget)
    chosen = list(families or DEFAULT_FAMILIES)
    for name in chosen:
        if name not in FAMILIES:
            raise InvalidInput(
                f"Unknown automl family {name!r}; known: {', '.join(FAMILIES)}",
                details={"field": "families", "known": list(FAMILIES)},
            )
    cfg = load_config(config, overrides)
    services = client or default_services()
    start = time.monotonic()
    deadline = start + budget
    if cfg.task is None:  # the objective's default metric depends on the task
        table, ref = load_table(services.data, cfg.data, sample=cfg.sample, seed=cfg.seed)
        cfg = cfg.model_copy(update={"task": prepare(table, ref, cfg).task})
    assert cfg.task is not None
    if cfg.task not in (Task.CLASSIFICATION, Task.REGRESSION):
        raise InvalidInput(
            f"automl searches classification and regression families; for a {cfg.task.value} "
            "job use strata tune with a tune.space over its family",
            details={"field": "task"},
        )
    tune_cfg = cfg.tune or TuneConfig()
    metric, direction = objective_metric(cfg.model_copy(update={"tune": tune_cfg}))
    base = cfg.model_dump(mode="json", exclude_unset=True, exclude={"tune", "model"})
    base["task"] = cfg.task.value
    base["evaluate"] = False
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    board: list[LeaderboardEntry] = []
    total = 0
    with fluent.start_run(
        experiment=cfg.experiment,
        run_name="automl",
        tags={"strata.training.kind": "automl"},
        client=services.tracking,
    ) as parent:
        fluent.log_params(
            {
                "automl.families": ",".join(chosen),
                "automl.time_budget_s": budget,
                "automl.metric": metric,
                "automl.direction": direction,
            }
        )
        for i, name in enumerate(chosen):
            share = (deadline - time.monotonic()) / (len(chosen) - i)
            family_deadline = time.monotonic() + max(0.0, share)
            model, space = _family_model(name, cfg.task)
            study = optuna.create_study(
                direction=direction, sampler=optuna.samplers.TPESampler(seed=cfg.seed)
            )
            runs: dict[int, str] = {}

            def objective(
                trial: optuna.Trial,
                model: dict[str, Any] = model,
                space: dict[str, SpaceParam] = space,
                name: str = name,
                runs: dict[int, str] = runs,
            ) -> float:
                raw = copy.deepcopy(base)
                raw["model"] = copy.deepcopy(model)
                for key, spec in space.items():
                    _set_path(raw, f"model.params.{key}", _suggest(trial, key, spec))
                raw["run_name"] = f"{name}-{trial.number}"
                result = train(
                    raw,
                    client=services,
                    parent_run_id=parent.run_id,
                    tags={TAG_FAMILY: name, TAG_TRIAL: str(trial.number)},
                )
                runs[trial.number] = result.run_id
                return result.metrics[metric]

            def budget_left(study: optuna.Study, _t: Any, until: float = family_deadline) -> None:
                if time.monotonic() >= until:
                    study.stop()

            if time.monotonic() < family_deadline:
                study.optimize(
                    objective,
                    timeout=max(1.0, family_deadline - time.monotonic()),
                    callbacks=[budget_left],
                    catch=(InvalidInput,),
                )
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            total += len(study.trials)
            failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
            if failed and not done:  # say why a family is missing from the leaderboard
                reason = str(failed[0].system_attrs.get("fail_reason", "failed"))[-500:]
                fluent.set_tag(f"strata.automl.error.{name}", reason)
            if done:
                best = study.best_trial
                board.append(
                    LeaderboardEntry(
                        family=name,
                        run_id=runs[best.number],
                        value=float(best.value or 0.0),
                        params=dict(best.params),
                        trials=len(done),
                    )
                )
                fluent.log_metric(f"{name}.{metric}", float(best.value or 0.0))
        board.sort(key=lambda e: e.value, reverse=direction == "maximize")
        top = board[0] if board else None
        fluent.set_tags(
            {
                "strata.automl.best_run_id": top.run_id if top else "",
                "strata.automl.best_family": top.family if top else "",
            }
        )
        fluent.log_dict([e.model_dump(mode="json") for e in board], "automl/leaderboard.json")
    return AutomlResult(
        parent_run_id=parent.run_id,
        metric=metric,
        direction=direction,
        best_run_id=top.run_id if top else None,
        best_family=top.family if top else None,
        leaderboard=board,
        trials=total,
        seconds=round(time.monotonic() - start, 3),
    )
