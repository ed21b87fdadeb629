"""The tracking interface: experiments, runs, params, metrics, tags, inputs, artifacts and
MLflow 3's LoggedModels.

One interface, two implementations: :class:`strata.tracking.embedded.EmbeddedTracking`
(in-process, on the metadata DB and artifact store) and
:class:`strata.tracking.remote.RemoteTracking` (the same methods over HTTP). The single-item
logging methods are built on :meth:`TrackingService.log_batch`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from strata.core.clock import now_ms
from strata.core.errors import InvalidInput
from strata.tracking.models import (
    DatasetInput,
    DatasetRef,
    DatasetSummary,
    Experiment,
    FileInfo,
    InputUse,
    LoggedModel,
    LoggedModelStatus,
    Metric,
    MetricPoint,
    ModelDirection,
    ModelMetric,
    ModelOrder,
    Page,
    Param,
    Run,
    RunInfo,
    RunModels,
    RunRecords,
    RunStatus,
    RunTag,
    ViewType,
)

if TYPE_CHECKING:
    import pandas as pd


class TrackingService(ABC):
    """Experiment tracking. Every ``get_*`` raises NotFound naming the missing id."""

    # -- experiments -------------------------------------------------------------------------
    @abstractmethod
    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Experiment:
        """Create an experiment; AlreadyExists if the name is taken (even by a deleted one)."""

    @abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment: ...

    @abstractmethod
    def get_experiment_by_name(self, name: str) -> Experiment: ...

    @abstractmethod
    def search_datasets(self, experiment_ids: Sequence[str]) -> list[DatasetSummary]:
        """The distinct datasets (name, digest, context) the runs of ``experiment_ids`` logged
        as inputs, one summary per experiment; at most 1,000. Experiments that do not exist
        are skipped (as in MLflow); no ids, or more than 20, is InvalidInput."""

    @abstractmethod
    def search_experiments(
        self,
        *,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        """Experiments matching ``filter`` (``name LIKE 'x%'``, ``tags.k = 'v'``,
        ``creation_time > ms``...), ordered by ``order_by`` (default newest first)."""

    @abstractmethod
    def update_experiment(
        self, experiment_id: str, *, name: str | None = None, description: str | None = None
    ) -> Experiment: ...

    @abstractmethod
    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None: ...

    @abstractmethod
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove a tag of an experiment; NotFound when the experiment has no such tag."""

    @abstractmethod
    def delete_experiment(self, experiment_id: str) -> None:
        """Mark an experiment (and so its runs) deleted; restorable."""

    @abstractmethod
    def restore_experiment(self, experiment_id: str) -> None: ...

    # -- runs --------------------------------------------------------------------------------
    @abstractmethod
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        user: str | None = None,
    ) -> Run:
        """Start a RUNNING run; a name is generated when none is given."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run: ...

    @abstractmethod
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo: ...

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED) -> RunInfo:
        """Set a terminal status and the end time (now)."""
        return self.update_run(run_id, status=status, end_time=now_ms())

    @abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    @abstractmethod
    def restore_run(self, run_id: str) -> None: ...

    @abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Log metrics, params and tags atomically: a batch that fails writes nothing.

        Params are immutable: the same value again is accepted, a different one raises
        Conflict naming both values. Metric values may be NaN or ±inf.
        """

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        self.log_batch(run_id, metrics=[Metric(key, value, timestamp or now_ms(), step)])

    def log_param(self, run_id: str, key: str, value: object) -> None:
        self.log_batch(run_id, params=[Param(key, str(value))])

    def set_tag(self, run_id: str, key: str, value: object) -> None:
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    @abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abstractmethod
    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        """Record datasets the run used (idempotent per name + digest + context)."""

    @abstractmethod
    def get_metric_history(
        self, run_id: str, key: str, *, max_results: int | None = None
    ) -> list[MetricPoint]:
        """Every point of one metric, ordered by step, then timestamp."""

    @abstractmethod
    def get_metric_history_bulk(
        self, run_ids: Sequence[str], key: str, *, max_results: int = 25_000
    ) -> list[MetricPoint]:
        """History of ``key`` for several runs (each point carries its run_id), ordered by
        run, step, timestamp; at most ``max_results`` points in all."""

    @abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[str] | str,
        filter: str | None = None,
        *,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Page[Run]:
        """Runs matching MLflow's filter grammar, compiled to SQL.

        ``experiment_ids``: experiment ids or names (an id is tried first), deleted ones
        included; an experiment that is neither raises NotFound (never an empty page).

        ``filter``: clauses joined by ``and``, e.g. ``metrics.auc > 0.8 and params.model =
        'lgbm' and tags.team LIKE 'ml%' and attributes.status = 'FINISHED'``. ``order_by``:
        ``["metrics.auc DESC", "attributes.start_time"]``; runs without the ordering value
        come last. Default order: newest first. Malformed filters raise InvalidInput with the
        position of the offending token.
        """

    def search_run_records(
        self,
        experiment_ids: Sequence[str] | str,
        filter: str | None = None,
        *,
        view: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
        params_json: bool = False,
    ) -> RunRecords:
        """:meth:`search_runs` as plain tuples with each run's model links, for a renderer
        that builds its own format from them (the MLflow search route); same runs, same
        order, same errors. The embedded service reads them straight from its tables; this
        default builds them from :meth:`search_runs` and :meth:`list_run_models`.
        ``params_json``: the params as :attr:`RunRecords.params_json` where the store can
        write them so (the embedded service on SQLite); a hint, the default ignores it."""
        page = self.search_runs(
            experiment_ids,
            filter,
            view=view,
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )
        models = self.list_run_models([r.info.run_id for r in page.items])
        return RunRecords.from_runs(page.items, models, page.next_page_token)

    def compare_runs(
        self,
        experiment_ids: Sequence[str] | str | None = None,
        filter: str | None = None,
        *,
        run_ids: Sequence[str] | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
    ) -> pd.DataFrame:
        """A DataFrame, one row per run: run_id, run_name, experiment_id, status, start_time,
        then ``params.*`` and ``metrics.*`` (latest values) columns.

        Give experiments (ids or names, as ``search_runs`` takes them) and/or ``run_ids``.
        With ``run_ids`` the rows keep their order unless ``order_by`` says otherwise; an
        unknown run or experiment raises NotFound; ``filter`` narrows either further.
        """
        import pandas as pd

        if run_ids is not None:
            runs = self._compare_by_ids(list(run_ids), experiment_ids, filter, order_by)
        elif experiment_ids is None:
            raise InvalidInput(
                "compare_runs needs experiment_ids (ids or names) or run_ids",
                details={"field": "experiment_ids"},
            )
        else:
            runs = self.search_runs(
                experiment_ids, filter, order_by=order_by, max_results=max_results
            ).items
        rows = []
        for run in runs:
            row: dict[str, object] = {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "experiment_id": run.info.experiment_id,
                "status": run.info.status.value,
                "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
            }
            row.update({f"params.{k}": v for k, v in sorted(run.params.items())})
            row.update({f"metrics.{k}": v for k, v in sorted(run.metrics.items())})
            rows.append(row)
        return pd.DataFrame(rows)

    def _compare_by_ids(
        self,
        run_ids: list[str],
        experiment_ids: Sequence[str] | str | None,
        filter: str | None,
        order_by: Sequence[str] | None,
    ) -> list[Run]:
        if not run_ids:
            raise InvalidInput(
                "run_ids is empty: give at least one run id", details={"field": "run_ids"}
            )
        found = {r: self.get_run(r) for r in dict.fromkeys(run_ids)}  # NotFound for unknown ids
        exp_ids = sorted({run.info.experiment_id for run in found.values()})
        if experiment_ids is not None:
            exp_ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        if not filter and not order_by and experiment_ids is None:
            return list(found.values())
        quoted = ", ".join(f"'{r}'" for r in found)  # ids get_run accepted: plain hex
        clause = f"attributes.run_id IN ({quoted})" + (f" and {filter}" if filter else "")
        page = self.search_runs(
            exp_ids, clause, view=ViewType.ALL, order_by=order_by, max_results=len(found)
        )
        if order_by:
            return page.items
        position = {r: i for i, r in enumerate(found)}
        return sorted(page.items, key=lambda run: position[run.info.run_id])

    @abstractmethod
    def list_input_uses(self, datasets: Sequence[tuple[str, str]]) -> list[InputUse]:
        """The runs that logged any of ``datasets`` (``(name, digest)`` pairs) as an input,
        in every experiment, deleted runs included: one entry per run, dataset and context,
        ordered by run start time (oldest first), then run id, then context. One query;
        InvalidInput for more than 1,000 pairs."""

    # -- artifacts ---------------------------------------------------------------------------
    @abstractmethod
    def log_artifact_stream(self, run_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        """Stream one file into the run's artifacts at ``path`` (relative, no ``..``)."""

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> FileInfo:
        """Upload a local file under ``artifact_path`` (a directory in the run's artifacts)."""
        src = Path(local_path)
        dest = f"{artifact_path.strip('/')}/{src.name}" if artifact_path else src.name
        with src.open("rb") as fh:
            return self.log_artifact_stream(run_id, dest, fh)

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> list[FileInfo]:
        """Upload every file below ``local_dir``, keeping the tree."""
        root = Path(local_dir)
        out = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = file.relative_to(root).as_posix()
            dest = f"{artifact_path.strip('/')}/{rel}" if artifact_path else rel
            with file.open("rb") as fh:
                out.append(self.log_artifact_stream(run_id, dest, fh))
        return out

    @abstractmethod
    def list_artifacts(self, run_id: str, path: str = "") -> list[FileInfo]:
        """Immediate children of ``path`` in the run's artifacts, sorted by path."""

    @abstractmethod
    def open_artifact(self, run_id: str, path: str) -> tuple[FileInfo, str, BinaryIO]:
        """One artifact file: its info, its recorded sha256 (``""`` when none was recorded)
        and a reader of its bytes (the caller closes it; reading to the end checks the
        digest, raising DigestMismatch). NotFound naming the run and path if absent;
        InvalidInput for a directory."""

    @abstractmethod
    def delete_artifact(self, run_id: str, path: str) -> None:
        """Delete one file or a directory (with everything below it) of the run's artifacts;
        NotFound naming the run and path if absent. Audited as ``run.delete_artifact``."""

    @abstractmethod
    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | Path = ".") -> Path:
        """Download a file or directory (recursively) below ``dst_path``; returns its local
        path. Digests are checked; a corrupted file never appears at the destination."""

    # -- logged models (MLflow 3) ------------------------------------------------------------
    # Times are epoch ms like runs'; every change is audited as ``logged_model.<action>``.
    @abstractmethod
    def create_logged_model(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> LoggedModel:
        """A PENDING model; its artifact location is ``{experiment artifact location}/models/
        {model_id}/artifacts``. A name is generated when none is given (1 to 500 characters,
        no ``/``). NotFound for an unknown experiment or source run, InvalidInput for a
        deleted experiment or a bad name or key."""

    @abstractmethod
    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        """A model with its tags, params and metric points (in logging order); NotFound
        naming the id if unknown, or deleted unless ``allow_deleted``."""

    @abstractmethod
    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        *,
        filter: str | None = None,
        order_by: Sequence[ModelOrder | tuple[str, bool]] = (),
        max_results: int = 100,
        page_token: str | None = None,
        datasets: Sequence[DatasetRef | tuple[str, str | None]] = (),
    ) -> Page[LoggedModel]:
        """Active models of the experiments matching ``filter`` (the run filter grammar of
        :meth:`search_runs` over ``name``, ``model_id``, ``model_type``, ``status``,
        ``source_run_id``, ``creation_timestamp``, ``last_updated_timestamp``, ``params.*``,
        ``tags.*`` and ``metrics.*``, a metric clause matching any logged point), ordered by
        ``order_by`` (:class:`ModelOrder`: attributes, or ``metrics.<key>`` by each model's
        latest point, models without one last), then newest first, then by id (MLflow's
        order). ``datasets``: only metric points logged against one of them count, and
        without a metric clause only models with such a point match. ``max_results`` is 1
        to 1,000; InvalidInput names a malformed filter's position."""

    @abstractmethod
    def update_logged_model(
        self,
        model_id: str,
        *,
        status: LoggedModelStatus | str,
        status_message: str | None = None,
    ) -> LoggedModel:
        """Set the model's status (``READY`` once its files are uploaded, ``UPLOAD_FAILED``)."""

    def finalize_logged_model(
        self, model_id: str, status: LoggedModelStatus | str = LoggedModelStatus.READY
    ) -> LoggedModel:
        """MLflow's spelling of :meth:`update_logged_model`."""
        return self.update_logged_model(model_id, status=status)

    @abstractmethod
    def delete_logged_model(self, model_id: str) -> None:
        """Mark the model deleted: ``get_logged_model`` and searches no longer see it."""

    @abstractmethod
    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        """Set (or overwrite) tags of an active model."""

    @abstractmethod
    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        """NotFound when the model has no such tag."""

    @abstractmethod
    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        """Params are immutable: the same value again is fine, another one is a Conflict
        naming both values (and nothing is written)."""

    @abstractmethod
    def log_model_metrics(self, metrics: Sequence[ModelMetric]) -> None:
        """Record metric points on their models in one transaction; NotFound for an unknown
        model, and then nothing is written."""

    @abstractmethod
    def log_run_models(
        self,
        run_id: str,
        direction: ModelDirection | str,
        models: Sequence[tuple[str, int]],
    ) -> None:
        """Record ``(model_id, step)`` pairs a run used (``input``) or produced
        (``output``); logging a pair again updates its step. NotFound for an unknown run or
        model (nothing written)."""

    @abstractmethod
    def list_run_models(self, run_ids: Sequence[str]) -> dict[str, RunModels]:
        """The model inputs and outputs of each run, by run id; runs without any are absent
        (unknown ids included: this is a lookup, not a check)."""

    @abstractmethod
    def log_model_artifact_stream(self, model_id: str, path: str, fileobj: BinaryIO) -> FileInfo:
        """Stream one file below the model's artifact root at ``path`` (relative, no ``..``);
        InvalidInput when the model's artifacts live outside this artifact store."""

    @abstractmethod
    def list_model_artifacts(self, model_id: str, path: str = "") -> list[FileInfo]:
        """Immediate children of ``path`` in the model's artifacts (paths relative to its
        root), sorted by path; ``[]`` before anything was uploaded, NotFound for a missing
        directory."""

    @abstractmethod
    def open_model_artifact(self, model_id: str, path: str) -> tuple[FileInfo, str, BinaryIO]:
        """One file of the model's artifacts, as :meth:`open_artifact` gives a run's."""

    @abstractmethod
    def delete_model_artifact(self, model_id: str, path: str) -> None:
        """Delete a file or directory of the model's artifacts, as :meth:`delete_artifact`."""
