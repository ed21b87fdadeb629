"""A tuning study's definition: the objective metric, the search space (checked, sampled,
suggested), the sampler and pruner, and Optuna's RDB storage beside Strata's metadata
database (see :mod:`strata.training.tune`, which runs studies)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from strata.core.errors import InvalidInput
from strata.training.config import load_config
from strata.training.models import (
    LOWER_IS_BETTER,
    ParamType,
    Pruner,
    Sampler,
    SpaceParam,
    Task,
    TrainConfig,
)

if TYPE_CHECKING:
    import optuna


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def _sample_value(spec: SpaceParam) -> Any:
    if spec.type is ParamType.CATEGORICAL:
        return (spec.choices or [None])[0]
    low = spec.low if spec.low is not None else 0
    return int(low) if spec.type is ParamType.INT else float(low)


def objective_metric(cfg: TrainConfig) -> tuple[str, Literal["minimize", "maximize"]]:
    """The metric to optimise and its direction, checked against what the job logs."""
    from strata.training.metrics import default_metrics

    tune = cfg.tune
    assert tune is not None
    task = cfg.task or Task.CLASSIFICATION
    names = list(cfg.metrics or default_metrics(task))
    metric = tune.metric or (f"cv_{names[0]}_mean" if cfg.cv else f"test_{names[0]}")
    valid = [f"{p}_{m}" for p in ("train", "test") for m in names]
    if cfg.cv:
        valid += [f"cv_{m}_{s}" for m in names for s in ("mean", "std")]
    if metric not in valid:
        raise InvalidInput(
            f"tune.metric {metric!r} is not a metric this job logs; choose one of "
            f"{', '.join(valid)}",
            details={"field": "tune.metric", "valid": valid},
        )
    base = (
        metric.split("_", 1)[1].rsplit("_", 1)[0]
        if metric.startswith("cv_")
        else (metric.split("_", 1)[1])
    )
    direction: Literal["minimize", "maximize"] = tune.direction or (
        "minimize" if base in LOWER_IS_BETTER else "maximize"
    )
    return metric, direction


def check_space(cfg: TrainConfig) -> None:
    """Each space key must name a config key a trial can set, with values the job accepts;
    InvalidInput names ``tune.space.<parameter>`` otherwise."""
    from strata.training.families import _check_params, estimator_class

    assert cfg.tune is not None
    if not cfg.tune.space:
        raise InvalidInput(
            "tune.space is empty; give at least one parameter, e.g. "
            "model.params.learning_rate: {type: float, low: 0.01, high: 0.3, log: true}",
            details={"field": "tune.space"},
        )
    base = cfg.model_dump(mode="json", exclude_unset=True)
    for key, spec in cfg.tune.space.items():
        raw = copy.deepcopy(base)
        _set_path(raw, key, _sample_value(spec))
        try:
            trial_cfg = load_config(raw)
        except InvalidInput as exc:
            raise InvalidInput(
                f"tune.space.{key}: {exc.message}",
                details={"field": f"tune.space.{key}", "problem": exc.message},
            ) from None
        if key.startswith("model.params."):
            try:
                cls = estimator_class(trial_cfg.model, cfg.task or Task.CLASSIFICATION)
                _check_params(cls, {key.removeprefix("model.params."): _sample_value(spec)})
            except InvalidInput as exc:
                raise InvalidInput(
                    f"tune.space.{key}: {exc.message}",
                    details={"field": f"tune.space.{key}", "problem": exc.message},
                ) from None


def default_storage() -> str:
    """Optuna's RDB URL beside the metadata database (see the module docstring)."""
    from strata.core.config import load_settings

    settings = load_settings()
    if settings.uri:  # remote: the server's database is not ours to open
        return f"sqlite:///{settings.home / 'optuna.db'}"
    url = settings.db_uri
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return f"sqlite:///{os.path.join(os.path.dirname(path), 'optuna.db')}"
    if url.startswith("postgresql"):
        import sqlalchemy as sa

        optuna_url, schema = optuna_pg_url(url)
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        finally:
            engine.dispose()
        return optuna_url
    return url


def optuna_pg_url(url: str) -> tuple[str, str]:
    """Optuna's URL on the PostgreSQL database of ``url``, and its schema: ``strata_optuna``,
    or ``<schema>_optuna`` when ``url`` pins Strata's schema (``options=-csearch_path=X``).
    Optuna's search path holds its schema only: Optuna finds its Alembic version table by
    the search path, and with Strata's schema on it found Strata's and refused to start
    ("no longer compatible with the table schema")."""
    import re

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    options = parsed.query.get("options") or ""
    if not isinstance(options, str):
        options = " ".join(options)
    pinned = re.search(r"search_path\s*=\s*\"?([A-Za-z_][A-Za-z0-9_]*)", options)
    schema = f"{pinned.group(1)}_optuna" if pinned else "strata_optuna"
    rest = re.sub(r"-c\s*search_path\s*=\s*\S+", "", options).strip()
    options = f"{rest} -csearch_path={schema}".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(False), schema


def study_name(cfg: TrainConfig) -> str:
    """A default study name from the config (same config, same study: a rerun resumes)."""
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
    return f"{cfg.experiment}-{digest}"


def _sampler(cfg: TrainConfig, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    assert cfg.tune is not None
    kind = cfg.tune.sampler
    if kind is Sampler.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    if kind is Sampler.CMAES:
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise InvalidInput(
                "tune.sampler 'cmaes' needs the cmaes package: pip install cmaes",
                details={"field": "tune.sampler"},
            ) from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    if kind is Sampler.GRID:
        grid: dict[str, list[Any]] = {}
        for key, spec in cfg.tune.space.items():
            if spec.type is ParamType.CATEGORICAL:
                grid[key] = list(spec.choices or [])
            elif spec.type is ParamType.INT:
                step = int(spec.step or 1)
                grid[key] = list(range(int(spec.low or 0), int(spec.high or 0) + 1, step))
            elif spec.step:
                n = round(((spec.high or 0) - (spec.low or 0)) / spec.step)
                grid[key] = [float((spec.low or 0) + i * spec.step) for i in range(n + 1)]
            else:
                raise InvalidInput(
                    f"tune.space.{key}: the grid sampler needs 'step' (or choices) for a float",
                    details={"field": f"tune.space.{key}"},
                )
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(cfg: TrainConfig) -> optuna.pruners.BasePruner:
    import optuna

    assert cfg.tune is not None
    if cfg.tune.pruner is Pruner.MEDIAN:
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if cfg.tune.pruner is Pruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _suggest(trial: optuna.Trial, key: str, spec: SpaceParam) -> Any:
    if spec.type is ParamType.CATEGORICAL:
        return trial.suggest_categorical(key, list(spec.choices or []))
    if spec.type is ParamType.INT:
        return trial.suggest_int(
            key, int(spec.low or 0), int(spec.high or 0), step=int(spec.step or 1), log=spec.log
        )
    return trial.suggest_float(
        key, float(spec.low or 0), float(spec.high or 0), step=spec.step, log=spec.log
    )


HEARTBEAT_S = 30
"""How often a running trial records that its worker is alive (Optuna's heartbeat thread)."""
GRACE_S = 300
"""A running trial whose last heartbeat is older than this is failed by the next worker to
start a trial or by a resume, whatever machine it ran on, and its budget runs again: a dead
machine's trials would otherwise hold their share of the budget forever."""


@contextlib.contextmanager
def quiet_heartbeat() -> Iterator[None]:
    """Optuna warns on every use of its heartbeat (``ExperimentalWarning``: marked
    experimental since 2.9): silence those warnings only, where Strata uses it."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*(heartbeat|fail_stale_trials).*experimental",
            category=Warning,
        )
        yield


ATTR_OWNER = "strata_owner"
"""A trial's worker process (host, PID, start time), a user attribute: a RUNNING trial whose
process is gone is failed and re-run on resume; one running on another machine is left to it
while its heartbeat lasts (:data:`GRACE_S`)."""


def _storage(url: str, *, set_up: bool) -> optuna.storages.RDBStorage:
    """One Optuna RDB storage per process. ``set_up``: create the tables and check the
    schema version (the launching process, once); the workers it starts skip both (and
    Alembic's import: a fifth of a second of every worker's start-up). A SQLite file runs
    in WAL mode with ``synchronous=NORMAL``, as Strata's own database: readers do not block
    the other workers' writes and a commit is not an fsync. Trials record a heartbeat
    (:data:`HEARTBEAT_S`, :data:`GRACE_S`) and are created with their owner
    (:mod:`strata.training.owned_storage`)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///") and url.removeprefix("sqlite:///") not in ("", ":memory:"):
        path = url.removeprefix("sqlite:///").partition("?")[0]

        def connect() -> Any:
            import sqlite3

            conn = sqlite3.connect(path, timeout=60.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn

        kwargs["creator"] = connect
    from strata.training.owned_storage import OwnedStorage

    with quiet_heartbeat():
        return OwnedStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            skip_compatibility_check=not set_up,
            skip_table_creation=not set_up,
        )


def _load_study(
    cfg: TrainConfig, storage: optuna.storages.BaseStorage, name: str, seed: int
) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, direction = objective_metric(cfg)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction=direction,
        sampler=_sampler(cfg, seed),
        pruner=_pruner(cfg),
        load_if_exists=True,
    )
