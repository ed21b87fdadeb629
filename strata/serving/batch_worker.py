"""The worker side of batch scoring: one model per process, chunks in, predictions out.

Imported by freshly *spawned* processes (never forked: LightGBM's OpenMP pool deadlocks in a
forked child) and by Ray actors, so it imports only what scoring needs. The thread count is
set before the model's framework is imported (``OMP_NUM_THREADS``, then threadpoolctl for
BLAS/OpenMP pools already loaded), so N workers on N cores do not each spin up N threads.

A chunk is an Arrow table holding exactly the signature's input columns; it becomes
``dict[str, np.ndarray]`` (Arrow → numpy per column, nulls as NaN) and goes through
:meth:`strata.models.model.Model.predict_arrays` — no pandas for matrix flavors, no per-row
Python. The answer is an Arrow table of ``prediction`` (and ``probability_<label>`` columns).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from strata.models.model import Model

_state: dict[str, Any] = {}


def limit_threads(threads: int) -> None:
    """Cap this process's native thread pools at ``threads``."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(threads)


def exit_with_parent() -> None:
    """End this worker when the process that spawned it dies, even by SIGKILL (a pool's
    workers hold both ends of their task queue, so they never see it close): a watchdog
    thread notices the parent pid change within half a second. (Not PR_SET_PDEATHSIG: it
    fires when the parent *thread* that spawned the worker ends, not the process.)"""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="strata-parent-watch", daemon=True).start()


def init(path: str, trusted: bool, runtime: str, threads: int) -> None:
    """Process initializer: follow the parent's death, limit threads, then load (and
    verify) the model once."""
    exit_with_parent()
    limit_threads(threads)
    from strata.models.store import load

    model = load(path, trusted=trusted)
    model.runtime(runtime)  # type: ignore[arg-type]  # checked by BatchOptions
    _state.update(model=model, runtime=runtime)


def init_from_files(files: dict[str, bytes], trusted: bool, runtime: str, threads: int) -> str:
    """For a worker that may run on another machine (Ray): write the model's files into a
    private directory first, then :func:`init` from it (the digests are checked on load)."""
    work = Path(tempfile.mkdtemp(prefix="strata-batch-model-"))
    for rel, data in files.items():
        dest = work / rel
        if not dest.resolve().is_relative_to(work.resolve()):
            shutil.rmtree(work, ignore_errors=True)
            raise ValueError(f"model file name {rel!r} leaves the model directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    init(str(work), trusted, runtime, threads)
    return str(work)


def predict_table(model: Model, table: pa.Table, runtime: str, proba: bool) -> pa.Table:
    """Predictions for every row of ``table`` as an Arrow table."""
    import numpy as np
    import pyarrow as pa

    arrays = {
        name: _numpy(col) for name, col in zip(table.column_names, table.columns, strict=True)
    }
    rt: Any = runtime
    cols = {"prediction": pa.array(np.asarray(model.predict_arrays(arrays, runtime=rt)))}
    if proba and model.labels is not None:
        p = model.predict_proba(arrays, runtime=rt)
        for i, label in enumerate(model.labels):
            cols[f"probability_{label}"] = pa.array(np.ascontiguousarray(p[:, i]))
    return pa.table(cols)


def _numpy(col: Any) -> Any:
    """An Arrow column as one numpy array; nulls become NaN (ints widen to float64)."""
    import pyarrow as pa

    combined = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if combined.null_count and pa.types.is_integer(combined.type):
        combined = combined.cast(pa.float64())
    return combined.to_numpy(zero_copy_only=False)


def score(table: pa.Table, proba: bool) -> pa.Table:
    """Score one chunk with the model :func:`init` loaded in this process."""
    return predict_table(_state["model"], table, _state["runtime"], proba)
