"""MLflow metric-history routes (single, bulk, sampled bulk), run artifact listing, and the
``server-info`` capabilities document the 3.x client reads before artifact transfers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from strata.core.errors import InvalidInput, NotFound
from strata.core.paths import safe_relpath
from strata.core.principal import Permission
from strata.tracking import search
from strata.tracking.mlflow_api._common import (
    add_route,
    json_response,
    missing,
    opt_int,
    opt_str,
    read_body,
    req_str,
    run_sync,
    str_list,
    tracking,
)
from strata.tracking.mlflow_api._convert import metric_points_json
from strata.tracking.service import TrackingService

router = APIRouter()
MAX_BULK_RUNS = 100
MAX_BULK_POINTS = 25_000
MAX_SAMPLED_PER_RUN = 2500


async def get_metric_history(request: Request) -> Response:
    """Points of one metric by step, then timestamp. With ``max_results`` the history comes
    in pages: ``next_page_token`` is set while more points follow (the 3.x client asks for
    pages of 25,000 and follows the tokens)."""
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    key = req_str(body, "metric_key")
    max_results = opt_int(body, "max_results")
    if max_results is not None and max_results <= 0:
        raise InvalidInput(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be a "
            "positive integer.",
            details={"field": "max_results"},
        )
    offset = search.decode_page_token(opt_str(body, "page_token") or None)
    limit = None if max_results is None else offset + max_results + 1
    points = await run_sync(tracking(request).get_metric_history, run_id, key, max_results=limit)
    out: dict[str, Any] = {}
    if max_results is not None:
        if len(points) > offset + max_results:
            out["next_page_token"] = search.encode_page_token(offset + max_results)
        points = points[offset : offset + max_results]
    elif offset:
        points = points[offset:]
    if points:
        out["metrics"] = metric_points_json(points)
    return json_response(out)


def _bulk_args(body: dict[str, Any], field: str) -> tuple[list[str], str]:
    """The run ids and the metric key of ``get-history-bulk``, refused in MLflow's words."""
    run_ids = str_list(body, field)
    if not run_ids:
        raise InvalidInput(
            "GetMetricHistoryBulk request must specify at least one run_id.",
            details={"field": field},
        )
    if len(run_ids) > MAX_BULK_RUNS:
        raise InvalidInput(
            f"GetMetricHistoryBulk request cannot specify more than {MAX_BULK_RUNS} run_ids. "
            f"Received {len(run_ids)} run_ids.",
            details={"field": field},
        )
    key = body.get("metric_key")
    if key is None:
        raise InvalidInput(
            "GetMetricHistoryBulk request must specify a metric_key.",
            details={"field": "metric_key"},
        )
    return run_ids, req_str(body, "metric_key")


async def get_metric_history_bulk(request: Request) -> Response:
    """History of one key for several runs: ordered by run id, then step and timestamp."""
    body = await read_body(request)
    run_ids, key = _bulk_args(body, "run_id")
    limit = min(opt_int(body, "max_results") or MAX_BULK_POINTS, MAX_BULK_POINTS)
    if limit <= 0:
        raise InvalidInput("max_results must be positive", details={"field": "max_results"})
    points = await run_sync(
        tracking(request).get_metric_history_bulk, sorted(set(run_ids)), key, max_results=limit
    )
    return json_response({"metrics": metric_points_json(points, with_run=True)})


def _ntile_firsts(n: int, buckets: int) -> list[int]:
    """The first index of each of ``buckets`` NTILE buckets over ``n`` ordered rows (SQL's
    NTILE: the first ``n % buckets`` buckets hold one row more)."""
    if n <= buckets:
        return list(range(n))
    size, extra = divmod(n, buckets)
    firsts, at = [], 0
    for b in range(buckets):
        firsts.append(at)
        at += size + 1 if b < extra else size
    return firsts


def sampled_history(
    svc: TrackingService,
    run_ids: Sequence[str],
    key: str,
    max_results: int,
    start_step: int | None,
    end_step: int | None,
) -> list[dict[str, Any]]:
    """MLflow's sampling (its SQL store, 3.x): each run on its own, its points in
    ``[start_step, end_step]`` ordered by step, timestamp and value go into ``max_results``
    NTILE buckets and the first point of each is kept, and the run's last point always is (in
    place of the last sample when the sample is full). Points as MLflow metric JSON with
    ``run_id``, per run in the given order."""
    out: list[dict[str, Any]] = []
    for rid in dict.fromkeys(run_ids):
        points = svc.get_metric_history(rid, key)
        if start_step is not None and end_step is not None:
            points = [p for p in points if start_step <= p.step <= end_step]
        if not points:
            continue
        ordered = sorted(points, key=lambda p: (p.step, p.timestamp, p.value))
        picked = [ordered[i] for i in _ntile_firsts(len(ordered), max_results)]
        if picked[-1] is not ordered[-1]:
            if len(picked) >= max_results:
                picked[-1] = ordered[-1]
            else:
                picked.append(ordered[-1])
        for row in metric_points_json(picked):
            row["run_id"] = rid
            out.append(row)
    return out


_SEE_DOCS = " See the API docs for more information about request parameters."


async def get_metric_history_bulk_interval(request: Request) -> Response:
    """The MLflow UI's chart data, validated and worded as MLflow's server does it."""
    body = await read_body(request)
    run_ids = str_list(body, "run_ids")
    if not run_ids:
        raise missing("run_ids")
    if len(run_ids) > MAX_BULK_RUNS:
        raise InvalidInput(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_RUNS} "
            f"run_ids. Received {len(run_ids)} run_ids.{_SEE_DOCS}",
            details={"field": "run_ids"},
        )
    key = req_str(body, "metric_key")
    max_results = opt_int(body, "max_results")
    if max_results is None:
        max_results = MAX_SAMPLED_PER_RUN
    if not 1 <= max_results <= MAX_SAMPLED_PER_RUN:
        raise InvalidInput(
            f"max_results must be between 1 and {MAX_SAMPLED_PER_RUN}.{_SEE_DOCS}",
            details={"field": "max_results"},
        )
    start, end = opt_int(body, "start_step"), opt_int(body, "end_step")
    if (start is None) != (end is None):
        raise InvalidInput(
            "If either start step or end step are specified, both must be specified.",
            details={"field": "start_step" if start is None else "end_step"},
        )
    if start is not None and end is not None and start > end:
        raise InvalidInput(
            f"end_step must be greater than start_step. Found start_step={start} and "
            f"end_step={end}.",
            details={"field": "end_step"},
        )
    rows = await run_sync(sampled_history, tracking(request), run_ids, key, max_results, start, end)
    return json_response({"metrics": rows} if rows else {})


async def list_run_artifacts(request: Request) -> Response:
    """A run's artifacts below ``path``; a missing directory or a file lists as empty."""
    body = await read_body(request)
    run_id = req_str(body, "run_id", "run_uuid")
    path = opt_str(body, "path") or ""
    if path.strip("/"):
        path = safe_relpath(path)
    svc = tracking(request)

    def work() -> dict[str, Any]:
        run = svc.get_run(run_id)
        try:
            files = svc.list_artifacts(run_id, path)
        except (NotFound, InvalidInput):
            files = []
        out: dict[str, Any] = {"root_uri": run.info.artifact_uri}
        if files:
            out["files"] = [
                {"path": f.path, "is_dir": f.is_dir}
                | ({} if f.file_size is None else {"file_size": f.file_size})
                for f in files
            ]
        return out

    return json_response(await run_sync(work))


async def server_info(request: Request) -> Response:
    """What MLflow 3 clients probe: proxied artifacts, multipart uploads (``multipart.py``),
    plain downloads."""
    del request
    return json_response(
        {
            "store_type": "SqlStore",
            "workspaces_enabled": False,
            "trace_archival_enabled": False,
            "multipart_uploads_enabled": True,
            "multipart_downloads_enabled": False,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
        }
    )


R = Permission.READ
add_route(router, "/metrics/get-history", get_metric_history, ["GET"], R)
add_route(router, "/metrics/get-history-bulk", get_metric_history_bulk, ["GET"], R)
add_route(
    router, "/metrics/get-history-bulk-interval", get_metric_history_bulk_interval, ["GET"], R
)
add_route(router, "/artifacts/list", list_run_artifacts, ["GET"], R)
add_route(router, "/server-info", server_info, ["GET"], R, prefixes=("/api/3.0/mlflow",))
