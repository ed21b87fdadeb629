"""``strata.tune``: hyperparameter search with Optuna over training jobs.

A study has one parent run; each trial is a training job tracked as a child run of it. The
parent ends with the best trial's params (``best.<key>``) and metrics, and the tag
``strata.tune.best_run_id``. Trials report their per-fold metric, so the pruner stops weak
trials between folds (``cv`` needed for pruning).

Workers share one Optuna RDB storage, so the study resumes after a kill without repeating
finished trials: run the same command again (same ``--study``). Trials a killed worker left
RUNNING are marked FAIL on resume and re-run (on another machine: once their heartbeat has
been silent for ``GRACE_S``). The storage is, by default, beside Strata's
metadata database: a SQLite file ``optuna.db`` next to ``strata.db`` embedded, and the schema
``strata_optuna`` of the same PostgreSQL database at scale (Optuna keeps its own
``alembic_version`` table, which must not meet Strata's). ``executor="ray"`` runs the workers
as Ray tasks on the cluster ``ray.init`` finds (a local one by default).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strata.core.errors import InvalidInput
from strata.training.config import load_config
from strata.training.evaluate import Services, default_services
from strata.training.models import (
    Task,
    TrainConfig,
    TuneResult,
)
from strata.training.study import (
    ATTR_OWNER,
    _load_study,
    _set_path,
    _storage,
    _suggest,
    check_space,
    default_storage,
    objective_metric,
    quiet_heartbeat,
    study_name,
)

if TYPE_CHECKING:
    import optuna

ATTR_PARENT = "strata_parent_run_id"
#: Seconds a RUNNING trial without an owner (:data:`ATTR_OWNER`; one asked for outside
#: Strata's storage, which records it at the ask) is taken for one starting rather than a
#: dead one's.
OWNERLESS_GRACE_S = 60.0
TAG_STUDY = "strata.tune.study"
TAG_BEST = "strata.tune.best_run_id"
EXECUTORS = ("local", "ray")


#: How long a spawned worker waits for the launching process to set the study up.
READY_TIMEOUT_S = 600.0


def _warm_up(cfg: TrainConfig, services: Services) -> None:
    """What a spawned worker's first trial would otherwise pay inside the timed search:
    the family's and skops' imports and the dataset version read (cached per process, see
    :func:`strata.training.dataset.load_table`)."""
    from strata.models.flavors.sklearn import import_skops
    from strata.training.dataset import load_table
    from strata.training.families import estimator_class

    estimator_class(cfg.model, cfg.task or Task.CLASSIFICATION)
    import_skops()
    load_table(services.data, cfg.data, sample=cfg.sample, seed=cfg.seed)


def run_worker(
    raw: Mapping[str, Any],
    storage: str | optuna.storages.BaseStorage,
    name: str,
    trials: int,
    worker: int,
    client: Services | None = None,
    ready: Any = None,
) -> int:
    """One worker: trials of the study until ``trials`` are finished (complete or pruned)
    across all workers. Returns how many this worker ran.

    With ``ready`` (a multiprocessing Event: a worker spawned before the launching process
    has created the study and its parent run) the worker first warms up — imports, the
    client, the data version — and then waits for the event, so its start-up overlaps the
    launcher's set-up and first trials instead of following them."""
    import optuna

    from strata.training.checkpoints import owner
    from strata.training.job import train

    cfg = load_config(raw)
    assert cfg.tune is not None
    metric, _ = objective_metric(cfg)
    services = client or default_services()
    if ready is not None:
        _warm_up(cfg, services)
        if not ready.wait(READY_TIMEOUT_S):
            raise InvalidInput(
                f"tuning worker {worker}: the launching process did not set the study up "
                f"within {READY_TIMEOUT_S:.0f} s",
                details={"field": "workers"},
            )
    if isinstance(storage, str):  # a worker of a study its launcher has set up
        storage = _storage(storage, set_up=False)
    study = _load_study(cfg, storage, name, cfg.seed + worker)
    parent = str(study.user_attrs[ATTR_PARENT])
    base = cfg.model_dump(mode="json", exclude_unset=True, exclude={"tune"})
    base["evaluate"] = False
    ran = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal ran
        trial.set_user_attr(ATTR_OWNER, me)  # Strata's storage did at the ask; another may not
        if _claimed(study, before=trial.number) >= trials:
            # another worker claimed the last trial between this one's check and its ask
            raise _Surplus(f"trial {trial.number}: {trials} trials are finished or running")
        ran += 1
        trial_raw = copy.deepcopy(base)
        for key, spec in (cfg.tune.space if cfg.tune else {}).items():
            _set_path(trial_raw, key, _suggest(trial, key, spec))
        trial_raw["run_name"] = f"trial-{trial.number}"
        fold_key = metric.removeprefix("cv_").rsplit("_", 1)[0] if metric.startswith("cv_") else ""

        def on_fold(i: int, values: dict[str, float]) -> None:
            if fold_key and fold_key in values:
                trial.report(values[fold_key], i)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {i}")

        result = train(
            trial_raw,
            client=services,
            parent_run_id=parent,
            on_fold=on_fold,
            tags={
                TAG_STUDY: name,
                "strata.tune.trial": str(trial.number),
                "strata.tune.worker": str(worker),
            },
        )
        trial.set_user_attr("run_id", result.run_id)
        return result.metrics[metric]

    me = owner()
    if _claimed(study) < trials:
        with quiet_heartbeat():  # each trial starts by failing stale ones, and beats
            study.optimize(objective, callbacks=[_stop_at(trials)], catch=(_Surplus,))
    return ran


class _Surplus(Exception):
    """A trial asked for after the last one was claimed: it ends FAIL without training."""


def _claimed(study: optuna.Study, before: int | None = None) -> int:
    """Trials finished (complete or pruned) or running (numbered below ``before``): a
    running trial ends complete or pruned, or its worker fails the whole search, so a
    worker starts another trial only while these are fewer than wanted — with several
    workers no trial beyond ``trials`` is trained (Optuna's MaxTrialsCallback counts only
    finished ones: every other worker starts one more, whose CPU is wasted)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    found = study.get_trials(deepcopy=False, states=states)
    return len([t for t in found if before is None or t.number < before])


def _stop_at(trials: int) -> Any:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if _claimed(study) >= trials:
            study.stop()

    return callback


def _ray_worker(*args: Any) -> int:
    return run_worker(*args)


def tune(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    trials: int = 20,
    workers: int = 1,
    executor: str = "local",
    study: str | None = None,
    storage: str | None = None,
    client: Services | None = None,
) -> TuneResult:
    """Search the config's ``tune.space`` with ``trials`` finished trials in total.

    ``workers`` > 1 runs that many workers (``executor="local"``: this process and
    ``workers - 1`` spawned processes) or Ray
    tasks (``"ray"``); they share the RDB ``storage`` (default: beside the metadata DB) and
    track through ``strata.Client()`` of their environment. Rerunning with the same ``study``
    (default: derived from the config) resumes it. Raises InvalidInput naming a bad space
    parameter, metric, sampler or executor.
    """

    if executor not in EXECUTORS:
        raise InvalidInput(
            f"Unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}",
            details={"field": "executor"},
        )
    if trials < 1 or workers < 1:
        raise InvalidInput("trials and workers must be at least 1", details={"field": "trials"})
    cfg = load_config(config, overrides)
    if cfg.tune is None:
        raise InvalidInput(
            "The config has no tune: block (metric, direction, sampler, pruner, space)",
            details={"field": "tune"},
        )
    metric, direction = objective_metric(cfg)
    if (workers > 1 or executor == "ray") and client is not None and not _same_store(client):
        raise InvalidInput(
            f"workers={workers}: the other workers are processes of their own, which track "
            "through strata.Client() of their environment (STRATA_URI, STRATA_HOME, "
            "STRATA_DB_URI, STRATA_ARTIFACT_URI), and the client given tracks elsewhere; set "
            "the environment to that store or leave the client out",
            details={"field": "workers"},
        )
    url = storage or default_storage()
    name = study or study_name(cfg)
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    spawned = _Spawned(raw, url, name, trials, workers if executor == "local" else 1)
    try:
        with spawned:  # the workers start now: their start-up overlaps everything below
            check_space(cfg)
            services = client or default_services()
            store = _storage(url, set_up=True)
            parent_id = _set_up(cfg, services, store, name, metric, direction)
            spawned.ready.set()
            if executor == "local":
                # this process, already warm, is worker 0 beside the spawned ones
                run_worker(raw, store, name, trials, 0, services)
            else:
                _run_ray(raw, url, name, trials, workers)
    finally:
        spawned.ready.set()  # a worker still waiting finds the study (or fails fast)
    return _finish(services, cfg, store, name, parent_id, metric)


def _same_store(client: Services) -> bool:
    """Whether ``client`` tracks where ``strata.Client()`` of this environment does (what a
    worker process builds)."""
    from strata.core.config import load_settings

    env = load_settings()
    uri = getattr(client, "uri", None) or ""
    if uri != (env.uri or ""):
        return False
    settings = getattr(client, "settings", None)
    if uri or settings is None:
        return True
    mine = (settings.home, settings.db_uri, settings.artifact_uri)
    return mine == (env.home, env.db_uri, env.artifact_uri)


def _spawned_worker(*args: Any, package_index: Any = None, **kwargs: Any) -> None:
    """A spawned process's worker: :func:`run_worker`, then out without the interpreter's
    teardown. Once the trials are done every run is ended and every write committed; what
    is left (the exit hooks: flushing Strata's buffered writes, closing its client, logging)
    runs here, and clearing thousands of modules and objects (~0.35 s, while the launcher
    waits to join) is skipped as ``os._exit`` does for forked children. A worker that fails
    raises as usual (traceback, exit code 1)."""
    import atexit

    if package_index is not None:
        from strata.models.flavors.sklearn import share_package_index

        share_package_index(package_index)
    run_worker(*args, **kwargs)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(0)


class _Spawned:
    """``workers - 1`` worker processes (spawn), started at once so that their start-up
    (a fresh interpreter importing scikit-learn, LightGBM, Optuna, skops: seconds) runs
    while this process creates the study and the parent run; they wait on ``ready``.
    Leaving the block joins them and raises when one failed; an error inside the block
    stops them first."""

    def __init__(
        self, raw: Mapping[str, Any], url: str, name: str, trials: int, workers: int
    ) -> None:
        import multiprocessing

        from strata.models.flavors.sklearn import share_package_index

        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Event()
        index = share_package_index()  # read already (a warm process): the workers skip it
        self.workers = workers
        self.procs = [
            ctx.Process(
                target=_spawned_worker,
                args=(dict(raw), url, name, trials, i),
                kwargs={"ready": self.ready, "package_index": index},
                daemon=False,
            )
            for i in range(1, workers)
        ]

    def __enter__(self) -> _Spawned:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            for p in self.procs:
                p.terminate()
        for p in self.procs:
            p.join()
        failed = [p.exitcode for p in self.procs if p.exitcode != 0]
        if failed and exc_type is None:
            raise InvalidInput(
                f"{len(failed)} of {self.workers} tuning workers failed (exit codes {failed}); "
                "the study keeps its finished trials: rerun to resume",
                details={"field": "workers"},
            )


def _set_up(
    cfg: TrainConfig,
    services: Services,
    store: optuna.storages.BaseStorage,
    name: str,
    metric: str,
    direction: str,
) -> str:
    """The study (RUNNING trials whose worker process on this host is gone, or whose
    heartbeat stopped :data:`GRACE_S` ago on any machine, marked FAIL, so their budget runs
    again) and its parent run's id (created with the study's params on the first run)."""
    import optuna
    from optuna.trial import TrialState

    from strata.tracking import fluent
    from strata.training.checkpoints import owner_gone

    assert cfg.tune is not None
    st = _load_study(cfg, store, name, cfg.seed)
    now = datetime.now()  # Optuna stamps a trial's start in naive local time
    for running in st.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        held = running.user_attrs.get(ATTR_OWNER)
        if held is None:  # asked for, its owner not yet recorded: starting, or died then
            started = running.datetime_start
            if started is not None and now - started < timedelta(seconds=OWNERLESS_GRACE_S):
                continue  # another launcher's trial starting now (its heartbeat covers it)
            st._storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
        elif owner_gone(held):  # its process died: run its budget again
            st._storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
    with quiet_heartbeat():
        optuna.storages.fail_stale_trials(st)  # another machine's, silent for GRACE_S
    parent_id = st.user_attrs.get(ATTR_PARENT)
    if parent_id is None:
        with fluent.start_run(
            experiment=cfg.experiment,
            run_name=f"study-{name}",
            tags={TAG_STUDY: name, "strata.training.kind": "study"},
            client=services.tracking,
        ) as parent:
            fluent.log_params(
                {
                    "tune.metric": metric,
                    "tune.direction": direction,
                    "tune.sampler": cfg.tune.sampler.value,
                    "tune.pruner": cfg.tune.pruner.value,
                    "tune.space": json.dumps(
                        {
                            k: v.model_dump(mode="json", exclude_none=True)
                            for k, v in cfg.tune.space.items()
                        }
                    )[:6000],
                }
            )
            fluent.log_dict(cfg.model_dump(mode="json", exclude_unset=True), "training/config.yaml")
        parent_id = parent.run_id
        st.set_user_attr(ATTR_PARENT, parent_id)
    return str(parent_id)


def _run_ray(raw: Mapping[str, Any], url: str, name: str, trials: int, workers: int) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    env = {k: v for k, v in os.environ.items() if k.startswith("STRATA_")}
    remote = ray.remote(num_cpus=1, runtime_env={"env_vars": env})(_ray_worker)
    ray.get([remote.remote(raw, url, name, trials, i) for i in range(workers)])


def _finish(
    services: Services,
    cfg: TrainConfig,
    store: optuna.storages.BaseStorage,
    name: str,
    parent_id: str,
    metric: str,
) -> TuneResult:
    from optuna.trial import TrialState

    from strata.tracking.models import Metric, Param, RunStatus, RunTag

    st = _load_study(cfg, store, name, cfg.seed)
    done = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_run: str | None = None
    best_params: dict[str, Any] = {}
    best_value: float | None = None
    if done:
        best = st.best_trial
        best_run = best.user_attrs.get("run_id")
        best_params = dict(best.params)
        best_value = float(best.value) if best.value is not None else None
        metrics: list[Metric] = []
        if best_run:
            import time

            now = int(time.time() * 1000)
            child = services.tracking.get_run(best_run)
            metrics = [Metric(k, v, now, 0) for k, v in child.metrics.items() if "_" in k]
        existing = services.tracking.get_run(parent_id).params
        params = [
            Param(f"best.{k}", str(v))
            for k, v in best_params.items()
            if f"best.{k}" not in existing
        ]
        services.tracking.log_batch(
            parent_id,
            metrics=metrics,
            params=params,
            tags=[
                RunTag(TAG_BEST, best_run or ""),
                RunTag("strata.tune.trials", str(len(done))),
                # params are immutable; after a resume found a better trial the tags say so
                *(RunTag(f"strata.tune.best.{k}", str(v)) for k, v in best_params.items()),
            ],
        )
    services.tracking.end_run(parent_id, RunStatus.FINISHED)
    finished = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return TuneResult(
        parent_run_id=parent_id,
        best_run_id=best_run,
        best_params=best_params,
        best_value=best_value,
        trials=len(finished),
        study=name,
    )
