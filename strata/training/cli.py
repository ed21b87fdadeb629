"""CLI: ``strata train``, ``strata evaluate``, ``strata tune``, ``strata automl`` and
``strata runs reproduce``.

Jobs run in this process and track through ``strata.Client()`` (remote when ``STRATA_URI``
is set). Libraries load inside the commands, so ``strata --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from strata.core.console import console, print_json, print_table

ConfigArg = Annotated[Path, typer.Argument(help="The training config (YAML).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: KEY=VALUE with a dotted KEY (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@contextmanager
def _status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A Rich spinner on stderr naming the job's current step (quiet with --json)."""
    from rich.console import Console

    if not enabled:
        yield lambda _msg: None
        return
    err = Console(stderr=True)
    with err.status("starting") as status:
        yield lambda msg: status.update(msg)


def train_command(config: ConfigArg, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Train a model from CONFIG as one tracked run (metrics, model, evaluation report)."""
    from strata.client import Client
    from strata.training.job import train

    with Client() as client, _status(not as_json) as progress:
        result = train(config, set_ or (), client=client, progress=progress)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    console.print(
        f"run [bold]{result.run_id}[/bold] (experiment {result.experiment})  model "
        f"{result.model_uri}",
        highlight=False,
    )
    print_table(
        [{"metric": k, "value": f"{v:.4g}"} for k, v in sorted(result.metrics.items())],
        ["metric", "value"],
    )


def evaluate_command(
    model_uri: Annotated[
        str, typer.Argument(help="A model directory, runs:/RUN_ID/PATH or models:/...")
    ],
    data: Annotated[str, typer.Option("--data", help="A dataset reference: NAME[@VERSION].")],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="The label column (or the name of --target-sql); optional for clustering.",
        ),
    ] = None,
    target_sql: Annotated[
        str | None,
        typer.Option(
            "--target-sql", help="Compute the label with a SQL expression (arr_delay > 15)."
        ),
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", help="A column for fairness tables (repeatable)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Keep report.json, report.html and plots here."),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Store the report under this run's evaluation/.")
    ] = None,
    trusted: Annotated[
        bool, typer.Option("--trusted", help="Allow models that run code when loaded.")
    ] = False,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="ranking or clustering (default: classification when the model has labels, "
            "else regression).",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Ranking: the query column (implies --task ranking)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model on a dataset version: metrics, plots, SHAP, fairness."""
    from strata.client import Client
    from strata.training.evaluate import evaluate

    spec: Any = {"name": target or "target", "sql": target_sql} if target_sql else target
    with Client() as client, _status(not as_json) as progress:
        progress("evaluating")
        report = evaluate(
            model_uri,
            data,
            spec,
            sensitive or (),
            client=client,
            output=output,
            run_id=run_id,
            trusted=trusted,
            task=task,
            group=group,
        )
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    console.print(
        f"[bold]{report.model_uri}[/bold] on {report.data}: {report.rows} rows "
        f"({report.task.value})",
        highlight=False,
    )
    print_table(
        [{"metric": k, "value": f"{v:.4g}"} for k, v in report.metrics.items()], ["metric", "value"]
    )
    for fair in report.fairness:
        console.print(
            f"fairness by {fair.column}: demographic parity difference "
            f"{fair.demographic_parity_difference}, equalized odds difference "
            f"{fair.equalized_odds_difference}",
            highlight=False,
        )
    if output is not None:
        console.print(f"report: {output / 'report.html'}", highlight=False)


def tune_command(
    config: ConfigArg,
    trials: Annotated[int, typer.Option("--trials", help="Finished trials in total.")] = 20,
    workers: Annotated[int, typer.Option("--workers", help="Parallel workers.")] = 1,
    executor: Annotated[
        str, typer.Option("--executor", help="local (worker processes) or ray.")
    ] = "local",
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: from the config).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna RDB URL (default: beside the metadata DB)."),
    ] = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the config's tune.space: trials are child runs of the study's parent run."""
    from strata.client import Client
    from strata.training.tune import tune

    with Client() as client, _status(not as_json) as progress:
        progress(f"tuning: {trials} trials on {workers} worker(s)")
        result = tune(
            config,
            set_ or (),
            trials=trials,
            workers=workers,
            executor=executor,
            study=study,
            storage=storage,
            client=client,
        )
    doc = result.model_dump(mode="json", exclude={"study"})
    if as_json:
        print_json(doc)
        return
    console.print(
        f"study [bold]{result.study}[/bold]: {result.trials} trials, parent run "
        f"{result.parent_run_id}, best run {result.best_run_id} = {result.best_value}",
        highlight=False,
    )
    print_table(
        [{"param": k, "value": v} for k, v in result.best_params.items()], ["param", "value"]
    )


def automl_command(
    config: ConfigArg,
    time_budget: Annotated[
        str, typer.Option("--time-budget", help="Wall-time budget: 90s, 10m, 1h.")
    ] = "10m",
    family: Annotated[
        list[str] | None,
        typer.Option(
            "--family",
            help="A family to search (repeatable): lightgbm, xgboost, random_forest, linear, "
            "pytorch. Default: the first four.",
        ),
    ] = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search several families within a time budget; print the leaderboard (runs recorded)."""
    from strata.client import Client
    from strata.training.automl import automl

    with Client() as client, _status(not as_json) as progress:
        progress(f"automl: {', '.join(family or ['default families'])} within {time_budget}")
        result = automl(config, set_ or (), time_budget=time_budget, families=family, client=client)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    console.print(
        f"automl run [bold]{result.parent_run_id}[/bold]: {result.trials} trials in "
        f"{result.seconds:.0f} s, best {result.best_family} ({result.best_run_id})",
        highlight=False,
    )
    print_table(
        [
            {
                "rank": i + 1,
                "family": e.family,
                result.metric: f"{e.value:.4g}",
                "trials": e.trials,
                "run": e.run_id,
            }
            for i, e in enumerate(result.leaderboard)
        ],
        ["rank", "family", result.metric, "trials", "run"],
    )


def reproduce_command(
    run_id: Annotated[str, typer.Argument(help="The training run to run again.")],
    as_json: JsonOpt = False,
) -> None:
    """Re-run a training job from its recorded config, input version, seed and commit."""
    from strata.client import Client
    from strata.training.reproduce import reproduce

    with Client() as client, _status(not as_json) as progress:
        progress(f"reproducing {run_id}")
        result = reproduce(run_id, client=client)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    console.print(
        f"run [bold]{result.run_id}[/bold] reproduces {result.source_run_id}: "
        f"{'identical' if result.identical else 'different'} metrics",
        highlight=False,
    )
    print_table(
        [{"metric": k, "delta": f"{v:.3g}"} for k, v in result.deltas.items()], ["metric", "delta"]
    )
