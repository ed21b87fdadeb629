"""The JSON request formats besides OIP: the MLflow scoring protocol (``/invocations``) and
Strata JSON (``/v1/models/{name}/predict``), decoded straight to numpy columns.

MLflow's four inputs are accepted as ``mlflow models serve`` documents them:
``dataframe_split`` (``columns`` + ``data`` rows), ``dataframe_records`` (a list of records),
``instances`` (records, a dict of columns, or rows of a tensor) and ``inputs`` (a dict of
columns, or a tensor). The answer is ``{"predictions": [...]}`` like MLflow's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import orjson

from strata.core.errors import InvalidInput
from strata.models.signature import to_columns
from strata.serving.served import Prediction, ServedModel

Columns = dict[str, np.ndarray]
_T = TypeVar("_T")
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def loads(body: bytes) -> Any:
    """The JSON document of a body; InvalidInput (400) for malformed JSON."""
    if not body:
        raise InvalidInput("The request has no body; send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON: {exc}") from None


def _rows_to_columns(columns: list[Any], data: list[Any]) -> Columns:
    if not isinstance(columns, list) or not isinstance(data, list):
        raise InvalidInput(
            "dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)",
            details={"field": "dataframe_split"},
        )
    names = [str(c) for c in columns]
    if not data:
        return {n: np.zeros(0) for n in names}
    matrix = np.asarray(data) if all(isinstance(r, list) for r in data) else None
    if matrix is not None and matrix.ndim == 2 and matrix.dtype.kind in "iufb":
        if matrix.shape[1] != len(names):
            raise InvalidInput(
                f"dataframe_split rows have {matrix.shape[1]} values for {len(names)} columns",
                details={"field": "dataframe_split.data"},
            )
        return {n: matrix[:, i] for i, n in enumerate(names)}
    if any(not isinstance(r, list) or len(r) != len(names) for r in data):
        raise InvalidInput(
            f"every dataframe_split row must be a list of {len(names)} values",
            details={"field": "dataframe_split.data"},
        )
    cols = list(zip(*data, strict=True))
    out: Columns = {}
    for n, values in zip(names, cols, strict=True):
        out[n] = (
            np.array(values, dtype=object) if any(v is None for v in values) else np.asarray(values)
        )
    return out


def _as_columns(value: Any, field: str) -> Columns | np.ndarray:
    if isinstance(value, dict):
        if "columns" in value and "data" in value:
            return _rows_to_columns(value["columns"], value["data"])
        return {
            str(k): np.asarray(v) if isinstance(v, list) else np.asarray([v])
            for k, v in value.items()
        }
    if isinstance(value, list):
        return to_columns(value)
    raise InvalidInput(
        f"'{field}' must be a list of records, a dict of columns or a tensor",
        details={"field": field},
    )


def _ragged_is_bad_input(fn: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """Values that do not form a table (rows or columns of different lengths, nested lists
    numpy cannot stack) are the caller's mistake: InvalidInput, never a 500."""

    @functools.wraps(fn)
    def wrapper(doc: Any) -> _T:
        try:
            return fn(doc)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                "The values do not form a table: rows, columns or tensors of different "
                f"lengths or shapes ({str(exc).splitlines()[0][:200]})",
                details={"field": "body"},
            ) from None

    return wrapper


@_ragged_is_bad_input
def mlflow_columns(doc: Any) -> Columns | np.ndarray:
    """Columns (or a tensor) from an MLflow scoring request."""
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"The body must be a JSON object with one of {', '.join(MLFLOW_KEYS)}",
            details={"expected": list(MLFLOW_KEYS)},
        )
    keys = [k for k in MLFLOW_KEYS if k in doc]
    if len(keys) != 1:
        raise InvalidInput(
            f"The body must have exactly one of {', '.join(MLFLOW_KEYS)}; received "
            f"{', '.join(sorted(map(str, doc))) or 'none'}",
            details={"expected": list(MLFLOW_KEYS), "received": sorted(map(str, doc))},
        )
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        if not isinstance(value, dict):
            raise InvalidInput("dataframe_split must be an object", details={"field": key})
        return _rows_to_columns(value.get("columns", []), value.get("data", []))
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise InvalidInput(
                "dataframe_records must be a list of records", details={"field": key}
            )
        return to_columns(value)
    return _as_columns(value, key)


@_ragged_is_bad_input
def strata_columns(doc: Any) -> tuple[Columns | np.ndarray, str | None]:
    """Columns from a Strata JSON request (``records``, ``columns`` or ``inputs``) and its
    optional ``key`` (the entity key logged; the sticky key with ``sticky_key: field:key``)."""
    if not isinstance(doc, dict):
        raise InvalidInput('The body must be a JSON object with "records" or "columns"')
    key = doc.get("key")
    key_text = None if key is None else str(key)
    for name in ("records", "columns", "inputs"):
        if name in doc:
            value = doc[name]
            if name == "records" and not (
                isinstance(value, list) and all(isinstance(r, dict) for r in value)
            ):
                raise InvalidInput("records must be a list of objects", details={"field": name})
            if name == "columns" and not isinstance(value, dict):
                raise InvalidInput("columns must be an object of lists", details={"field": name})
            return _as_columns(value, name), key_text
    raise InvalidInput(
        'The body must have "records" (a list of objects) or "columns" (an object of lists)',
        details={"expected": ["records", "columns"]},
    )


def _plain(arr: np.ndarray) -> list[Any]:
    out: list[Any] = arr.tolist()
    return out


def mlflow_response(pred: Prediction) -> bytes:
    """``{"predictions": [...]}`` as ``mlflow models serve`` answers a pyfunc's labels."""
    return orjson.dumps({"predictions": _plain(pred.prediction)})


def strata_response(served: ServedModel, pred: Prediction, *, request_id: str, path: str) -> bytes:
    doc: dict[str, Any] = {
        "model": served.name,
        "version": served.version,
        "request_id": request_id,
        "path": path,
        "predictions": _plain(pred.prediction),
    }
    if pred.proba is not None:
        doc["probabilities"] = pred.proba.tolist()
        doc["labels"] = pred.labels
    return orjson.dumps(doc)
