"""``strata.train``: one training job, one tracked run.

The run holds the config (``training/config.yaml``, params as dotted keys), the exact input
version (``log_input`` + tag ``strata.training.data``), the code commit and environment
(captured by ``start_run``), metrics ``train_<m>``, ``test_<m>``, ``cv_<m>`` per fold (step =
fold) with ``cv_<m>_mean``/``cv_<m>_std``, the feature importance, the model (a Pipeline with
its preprocessing, via ``strata.log_model``) and the evaluation report under
``evaluation/``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.training.config import load_config
from strata.training.dataset import JobData, load_table, prepare
from strata.training.evaluate import Services, build_report, default_services
from strata.training.families import build_pipeline, feature_importance
from strata.training.metrics import (
    clustering_metrics,
    compute,
    default_metrics,
    ranking_metrics,
)
from strata.training.models import Family, Task, TrainConfig, TrainResult, check_metric
from strata.training.split import folds, holdout
from strata.training.torch_loop import Checkpointer

#: Called after each CV fold with (fold index, that fold's metrics); may raise to stop
#: (HPO pruning raises optuna.TrialPruned).
FoldCallback = Callable[[int, dict[str, float]], None]
Progress = Callable[[str], None]
#: The checkpointer of one fit (``fold0``... or ``final``), for estimators that take one.
Checkpoints = Callable[[str], Checkpointer]

TAG_CONFIG = "strata.training.config"
TAG_DATA = "strata.training.data"
TAG_TASK = "strata.training.task"
TAG_KIND = "strata.training.kind"


#: Classifiers whose ``predict`` is ``classes_[argmax(predict_proba)]`` (LightGBM's and
#: XGBoost's code does exactly that), so one inference serves both.
_ARGMAX_CLASSIFIERS = frozenset({"LGBMClassifier", "XGBClassifier"})


def _predict(pipeline: Any, X: Any, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    if task is not Task.CLASSIFICATION:
        return np.asarray(pipeline.predict(X)), None
    proba = np.asarray(pipeline.predict_proba(X))
    est: Any = pipeline.named_steps.get("model") if hasattr(pipeline, "named_steps") else None
    if type(est).__name__ in _ARGMAX_CLASSIFIERS and hasattr(est, "classes_"):
        return np.asarray(est.classes_)[np.argmax(proba, axis=1)], proba
    return np.asarray(pipeline.predict(X)), proba


def _fit(pipeline: Any, data: JobData, rows: np.ndarray) -> None:
    """Fit ``pipeline`` on ``rows``. A ranker gets its rows grouped by query (LightGBM: the
    group sizes, XGBoost: the query ids); a clusterer gets no target."""
    X = data.X
    if data.task is Task.CLUSTERING:
        pipeline.fit(X.iloc[rows])
        return
    if data.task is Task.RANKING and data.groups is not None:
        rows = rows[np.argsort(data.groups[rows], kind="stable")]
        est = type(pipeline.named_steps["model"]).__name__
        if est == "LGBMRanker":
            _, sizes = np.unique(data.groups[rows], return_counts=True)
            pipeline.fit(X.iloc[rows], data.y[rows], model__group=sizes)
            return
        if est == "XGBRanker":
            pipeline.fit(X.iloc[rows], data.y[rows], model__qid=data.groups[rows])
            return
    pipeline.fit(X.iloc[rows], data.y[rows])


def score(
    pipeline: Any, data: JobData, rows: np.ndarray, names: Sequence[str], seed: int
) -> dict[str, float]:
    """The metrics ``names`` of the fitted ``pipeline`` on ``rows`` of ``data``."""
    X = data.X.iloc[rows]
    if data.task is Task.RANKING:
        assert data.groups is not None
        scores = np.asarray(pipeline.predict(X), dtype=float)
        return ranking_metrics(data.y[rows], scores, data.groups[rows], names)
    if data.task is Task.CLUSTERING:
        clusters = np.asarray(pipeline.predict(X))
        inputs = pipeline[:-1].transform(X)  # the space the clusterer measured distances in
        truth = data.y[rows] if data.has_target else None
        return clustering_metrics(inputs, clusters, truth, names, seed)
    pred, proba = _predict(pipeline, X, data.task)
    return compute(data.task, data.y[rows], pred, proba, data.labels, names)


def fit_and_score(
    config: TrainConfig,
    data: JobData,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    names: Sequence[str],
    *,
    on_fold: FoldCallback | None = None,
    progress: Progress | None = None,
    checkpoints: Checkpoints | None = None,
) -> tuple[Any, dict[str, float], dict[str, list[float]]]:
    """The fitted Pipeline, its metrics (train_, test_, cv_*_mean/std) and per-fold values."""
    numeric = [c for c in data.features if c not in data.categorical]
    fold_values: dict[str, list[float]] = {}
    out: dict[str, float] = {}
    if config.cv is not None:
        for i, (tr, va) in enumerate(
            folds(data, train_idx, config.split, config.cv.folds, config.seed)
        ):
            if progress:
                progress(f"fold {i + 1}/{config.cv.folds}")
            pipe = build_pipeline(config.model, data.task, config.seed, numeric, data.categorical)
            _attach(pipe, checkpoints, f"fold{i}")
            _fit(pipe, data, tr)
            values = score(pipe, data, va, names, config.seed)
            for k, v in values.items():
                fold_values.setdefault(k, []).append(v)
            if on_fold is not None:
                on_fold(i, values)
        for k, vs in fold_values.items():
            out[f"cv_{k}_mean"] = float(np.mean(vs))
            out[f"cv_{k}_std"] = float(np.std(vs))
    if progress:
        progress("fit")
    pipe = build_pipeline(config.model, data.task, config.seed, numeric, data.categorical)
    _attach(pipe, checkpoints, "final")
    _fit(pipe, data, train_idx)
    for prefix, rows in (("train", train_idx), ("test", test_idx)):
        for k, v in score(pipe, data, rows, names, config.seed).items():
            out[f"{prefix}_{k}"] = v
    return pipe, out, fold_values


def _attach(pipeline: Any, checkpoints: Checkpoints | None, fit: str) -> None:
    est = pipeline.named_steps["model"]
    if checkpoints is not None and hasattr(est, "checkpointer"):
        est.checkpointer = checkpoints(fit)


def _plain_state(pipeline: Any) -> None:
    """LightGBM keeps ``best_score_`` as ``defaultdict(OrderedDict)`` even without eval sets;
    the skops format refuses ``collections`` types it cannot vouch for, so an empty one is
    stored as the plain ``dict`` it is equivalent to (nothing is lost: it is empty)."""
    est = pipeline.named_steps.get("model")
    for obj, attr in ((est, "_best_score"), (getattr(est, "_Booster", None), "best_score")):
        best = getattr(obj, attr, None)
        if isinstance(best, dict) and not any(best.values()):
            setattr(obj, attr, {})


def train(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    client: Services | None = None,
    on_fold: FoldCallback | None = None,
    progress: Progress | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    **fields: Any,
) -> TrainResult:
    """Run the training job ``config`` (a TrainConfig, mapping or YAML path; ``overrides``
    are ``KEY=VALUE`` strings, ``fields`` top-level keys) as one tracked run.

    Tracks through ``client`` (a :class:`strata.Client`; default ``strata.Client()``, remote
    when ``STRATA_URI`` is set): the job itself runs in this process. With ``parent_run_id``
    the run is a child of that run (HPO trials); with a run active in this process it is a
    nested child of it. Raises InvalidInput naming a bad config key, an unknown column (with
    the available ones), a one-class target or an invalid expression; NotFound for an
    unknown dataset or version. A failing job leaves its run FAILED, never FINISHED.
    """
    import strata.models as sm
    from strata.tracking import fluent

    cfg = load_config(config, overrides, **fields)
    services = client or default_services()
    if progress:
        progress(f"reading {cfg.data}")
    table, ref = load_table(services.data, cfg.data, sample=cfg.sample, seed=cfg.seed)
    data = prepare(table, ref, cfg)
    train_idx, test_idx = holdout(data, cfg.split, cfg.seed)
    names = list(cfg.metrics or default_metrics(data.task))
    for name in names:  # the task may have been inferred from the data just now
        try:
            check_metric(name, data.task)
        except ValueError as exc:
            raise InvalidInput(f"metrics: {exc}", details={"field": "metrics"}) from None
    from strata.training.reproduce import TAG_GIT_COMMIT, TAG_GIT_DIRTY, code_state

    code = code_state()
    run_tags = {
        TAG_CONFIG: cfg.model_dump_json(exclude_unset=False),
        TAG_DATA: ref,
        TAG_TASK: data.task.value,
        TAG_KIND: "train",
        **({TAG_GIT_COMMIT: code["commit"]} if "commit" in code else {}),
        **({TAG_GIT_DIRTY: code["dirty"]} if "dirty" in code else {}),
        **dict(tags or {}),
    }
    checkpointing = cfg.model.family is Family.PYTORCH
    resume_id: str | None = None
    if checkpointing:
        from strata.training import checkpoints as ck

        run_tags[ck.TAG_FINGERPRINT] = ck.fingerprint(run_tags[TAG_CONFIG], ref)
        run_tags[ck.TAG_OWNER] = ck.owner()
        if cfg.resume and parent_run_id is None and fluent.active_run() is None:
            resume_id = ck.resumable_run(
                services.tracking, cfg.experiment, run_tags[ck.TAG_FINGERPRINT]
            )
    if resume_id is not None:
        if progress:
            progress(f"resuming run {resume_id} from its checkpoints")
        run_tags[ck.TAG_RESUMED] = "true"
        run = fluent.start_run(run_id=resume_id, tags=run_tags, client=services.tracking)
    elif parent_run_id is not None:
        parent = services.tracking.get_run(parent_run_id)
        child = services.tracking.create_run(
            parent.info.experiment_id,
            run_name=cfg.run_name,
            tags=run_tags,
            parent_run_id=parent_run_id,
        )
        run = fluent.start_run(
            run_id=child.info.run_id,
            client=services.tracking,
            nested=fluent.active_run() is not None,  # automl's parent run is active here
        )
    else:
        run = fluent.start_run(
            experiment=cfg.experiment,
            run_name=cfg.run_name,
            tags=run_tags,
            client=services.tracking,
            nested=fluent.active_run() is not None,
        )
    with run:
        fluent.log_params(
            {
                **cfg.flat_params(),
                "task": data.task.value,
                "features": ",".join(data.features)[:6000],
                "data.version": ref,
                "data.rows": len(data.y),
                "data.rows_dropped": data.dropped_rows,
                "data.train_rows": len(train_idx),
                "data.test_rows": len(test_idx),
            }
        )
        fluent.log_dict(cfg.model_dump(mode="json", exclude_unset=True), "training/config.yaml")
        fluent.log_input(ref, context="train")
        tracking, run_id = services.tracking, run.run_id
        pipe, values, fold_values = fit_and_score(
            cfg,
            data,
            train_idx,
            test_idx,
            names,
            on_fold=on_fold,
            progress=progress,
            checkpoints=(lambda fit: ck.RunCheckpoints(tracking, run_id, fit))
            if checkpointing
            else None,
        )
        distributed = getattr(pipe.named_steps["model"], "distributed_", None)
        if distributed is not None:
            fluent.set_tag("strata.training.distributed", distributed)
        resumed = getattr(pipe.named_steps["model"], "resumed_from_step_", None)
        if resumed is not None:
            fluent.set_tag(ck.TAG_RESUMED_STEP, str(resumed))
        for k, vs in fold_values.items():
            for i, v in enumerate(vs):
                fluent.log_metric(f"cv_{k}", v, step=i)
        fluent.log_metrics(values)
        importance = feature_importance(pipe)
        if importance:
            fluent.log_dict(importance, "training/feature_importance.json")
        if progress:
            progress("logging the model")
        _plain_state(pipe)
        info = sm.log_model(
            pipe,
            "model",
            input_example=data.X.iloc[train_idx[:5]],
            dataset_versions=[ref],
            trusted=cfg.model.trusted,
        )
        if cfg.evaluate:
            if progress:
                progress("evaluating")
            test_frame = data.frame.iloc[test_idx]
            with tempfile.TemporaryDirectory(prefix="strata-eval-") as tmp:
                out = Path(tmp)
                if importance:
                    from strata.training.report import importance_plot

                    importance_plot(
                        importance, "Feature importance", "feature_importance.png", out, []
                    )
                build_report(
                    pipe,
                    data.X.iloc[test_idx],
                    data.y[test_idx],
                    task=data.task,
                    labels=data.labels,
                    out=out,
                    model_uri=info.model_uri,
                    data=ref,
                    target=data.target,
                    sensitive=test_frame[cfg.sensitive] if cfg.sensitive else None,
                    names=None,
                    shap_sample=cfg.shap_sample,
                    seed=cfg.seed,
                    groups=data.groups[test_idx] if data.groups is not None else None,
                    has_target=data.has_target,
                    transform=pipe[:-1].transform,
                )
                fluent.log_artifacts(out, "evaluation")
        fluent.flush()
        return TrainResult(
            run_id=run.run_id,
            experiment=cfg.experiment,
            model_uri=info.model_uri,
            metrics=values,
        )
