"""MLflow's ``runs/search`` answer written straight from the stored rows (issue 17).

:func:`search_page_json` takes a :class:`RunRecords` page (plain tuples) and returns the same
JSON, key for key and byte for byte, that :func:`strata.tracking.mlflow_api._convert.run_json`
gives for each :class:`Run` of the page: run name and parent tags kept in step with the info,
NaN/±inf metric values as MLflow's strings, unset fields and empty lists left out. No model
object is built per run or per value: one dict per item, grouped by run in one pass over
each list (the rows come ordered by run, then key), then one ``orjson.dumps``.

:func:`collector_paused` pauses Python's cyclic garbage collector around the whole search
(read and build): a page of 343 runs allocates ~15,000 tuples, lists and dicts, which
triggered collections that walked the server's whole heap, 4 of the 6 ms the build cost.
Reference counting still frees everything as usual; nothing here makes a cycle.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from strata.tracking.mlflow_api._common import num
from strata.tracking.mlflow_api._convert import PARENT_TAG, RUN_NAME_TAG, dataset_json
from strata.tracking.models import ModelDirection, RunRecords

_INPUT = ModelDirection.INPUT.value
Rows = Sequence[Sequence[Any]]


def _key_values(rows: Rows) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for rid, k, v in rows:
        items = out.get(rid)
        if items is None:
            out[rid] = items = []
        items.append({"key": k, "value": v})
    return out


def _tags(rows: Rows) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for rid, k, v in rows:
        tags = out.get(rid)
        if tags is None:
            out[rid] = tags = {}
        tags[k] = v
    return out


def _metrics(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    """``v - v == 0`` is the cheap "finite" test; NaN is stored as ``is_nan``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rid, k, v, nan, step, ts in rows:
        items = out.get(rid)
        if items is None:
            out[rid] = items = []
        value = "NaN" if nan else v if v - v == 0 else num(v)
        items.append({"key": k, "value": value, "timestamp": ts, "step": step})
    return out


def _datasets(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rid, name, digest, context, source_type, source, schema, profile, tags_json in rows:
        tags = orjson.loads(tags_json or "{}")
        item = dataset_json(name, digest, context, source_type, source, schema, profile, tags)
        out.setdefault(rid, []).append(item)
    return out


def _models(rows: Rows) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    inputs: dict[str, list[Any]] = {}
    outputs: dict[str, list[Any]] = {}
    for rid, model_id, direction, step in rows:
        if direction == _INPUT:
            inputs.setdefault(rid, []).append({"model_id": model_id})
        else:
            outputs.setdefault(rid, []).append({"model_id": model_id, "step": step})
    return inputs, outputs


def search_page(rec: RunRecords) -> dict[str, Any]:
    """The ``runs/search`` answer as a dict: ``runs`` (left out when none) and
    ``next_page_token`` (left out on the last page)."""
    params: dict[str, Any]
    if rec.params_json is not None:  # already JSON (SQLite): embedded as it is
        params = {rid: orjson.Fragment(text) for rid, text in rec.params_json.items()}
    else:
        params = _key_values(rec.params)
    tags = _tags(rec.tags)
    metrics = _metrics(rec.metrics)
    datasets = _datasets(rec.inputs) if rec.inputs else {}
    model_inputs, model_outputs = _models(rec.models) if rec.models else ({}, {})
    runs = []
    for rid, exp, name, user, status, start, end, stage, uri, parent in rec.runs:
        info: dict[str, Any] = {
            "run_id": rid,
            "run_uuid": rid,
            "run_name": name,
            "experiment_id": exp,
            "user_id": user,
            "status": status,
            "start_time": start,
            "artifact_uri": uri,
            "lifecycle_stage": stage,
        }
        if end is not None:
            info["end_time"] = end
        run_tags = tags.get(rid) or {}
        run_tags[RUN_NAME_TAG] = name
        if parent and PARENT_TAG not in run_tags:
            run_tags[PARENT_TAG] = parent
        data: dict[str, Any] = {}
        if rid in metrics:
            data["metrics"] = metrics[rid]
        if rid in params:
            data["params"] = params[rid]
        data["tags"] = [{"key": k, "value": v} for k, v in run_tags.items()]
        inputs: dict[str, Any] = {}
        if rid in datasets:
            inputs["dataset_inputs"] = datasets[rid]
        if rid in model_inputs:
            inputs["model_inputs"] = model_inputs[rid]
        run: dict[str, Any] = {"info": info, "data": data, "inputs": inputs}
        if rid in model_outputs:
            run["outputs"] = {"model_outputs": model_outputs[rid]}
        runs.append(run)
    out: dict[str, Any] = {}
    if runs:
        out["runs"] = runs
    if rec.next_page_token:
        out["next_page_token"] = rec.next_page_token
    return out


def search_page_json(rec: RunRecords) -> bytes:
    return orjson.dumps(search_page(rec))


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (process-wide; re-enabled only by the caller
    that paused it, so concurrent searches leave it enabled)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
