"""Where batch chunks are scored: a spawned local process pool, Ray actors, or inline.

Each executor loads the model once per worker (:mod:`strata.serving.batch_worker`) and
offers ``submit(table, proba) -> handle`` and ``completed(handles)`` (blocks until at least
one handle is done; returns ``(handle, predictions)`` pairs). A worker's failure surfaces as
the error it raised (a StrataError keeps its class), never as a hang.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from strata.core.errors import InvalidInput, Unavailable
from strata.serving import batch_worker

if TYPE_CHECKING:
    import pyarrow as pa

    from strata.serving.batch import BatchOptions
    from strata.serving.batch_model import PinnedModel


class Executor(Protocol):
    def submit(self, table: pa.Table, proba: bool) -> Any: ...

    def completed(self, handles: list[Any]) -> list[tuple[Any, pa.Table]]: ...


@contextmanager
def open_executor(
    kind: str, model: PinnedModel, options: BatchOptions, workers: int, threads: int
) -> Iterator[Executor]:
    """An executor of ``kind`` with ``workers`` workers of ``threads`` threads, closed (its
    processes or actors ended) on exit."""
    if kind == "inline":
        yield _Inline(model, options, threads)
    elif kind == "local":
        local = _Local(model, options, workers, threads)
        try:
            yield local
        finally:
            local.close()
    elif kind == "ray":
        ray = _Ray(model, options, workers, threads)
        try:
            yield ray
        finally:
            ray.close()
    else:
        raise InvalidInput(
            f"Unknown executor {kind!r}; expected local, ray or inline",
            details={"field": "executor"},
        )


class _Inline:
    """This process: no transfer at all (small jobs, tests, the benchmark's reference)."""

    def __init__(self, model: PinnedModel, options: BatchOptions, threads: int) -> None:
        from strata.models.store import load

        self.model = load(model.path, trusted=options.trusted)
        self.runtime = options.runtime
        self.results: dict[int, pa.Table] = {}

    def submit(self, table: pa.Table, proba: bool) -> Any:
        handle = len(self.results)
        self.results[handle] = batch_worker.predict_table(self.model, table, self.runtime, proba)
        return handle

    def completed(self, handles: list[Any]) -> list[tuple[Any, pa.Table]]:
        return [(h, self.results.pop(h)) for h in handles]


class _Local:
    """A ``ProcessPoolExecutor`` whose workers are *spawned* (never forked: LightGBM's OpenMP
    pool deadlocks in a forked child) and load the model once, in their initializer."""

    def __init__(
        self, model: PinnedModel, options: BatchOptions, workers: int, threads: int
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=batch_worker.init,
            initargs=(str(model.path), options.trusted, options.runtime, threads),
        )

    def submit(self, table: pa.Table, proba: bool) -> Any:
        return self.pool.submit(batch_worker.score, table, proba)

    def completed(self, handles: list[Any]) -> list[tuple[Any, pa.Table]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            try:
                out.append((fut, fut.result()))
            except BrokenProcessPool:
                raise Unavailable(
                    "A batch scoring worker process died (killed, or out of memory); "
                    "rerun the job: finished chunks are kept",
                    details={"executor": "local"},
                ) from None
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Ray:
    """One Ray actor per worker; the model's files travel through Ray's object store, so the
    actors may run on other machines of the cluster."""

    def __init__(
        self, model: PinnedModel, options: BatchOptions, workers: int, threads: int
    ) -> None:
        try:
            import ray
        except ImportError:
            raise InvalidInput(
                "executor ray needs Ray: pip install 'strata-ml[ray]'",
                details={"field": "executor"},
            ) from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            address = options.ray_address or _address()
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                num_cpus=None if address else workers,
            )
            self.started = True
        files = {rel: (model.path / rel).read_bytes() for rel in model.spec.files}
        files["strata-model.yaml"] = (model.path / "strata-model.yaml").read_bytes()
        ref = ray.put(files)
        actor: Any = ray.remote(num_cpus=1)(RayScorer)
        self.actors: list[Any] = [
            actor.remote(ref, options.trusted, options.runtime, threads) for _ in range(workers)
        ]
        self.next = 0

    def submit(self, table: pa.Table, proba: bool) -> Any:
        actor = self.actors[self.next % len(self.actors)]
        self.next += 1
        return actor.score.remote(table, proba)

    def completed(self, handles: list[Any]) -> list[tuple[Any, pa.Table]]:
        done, _ = self.ray.wait(handles, num_returns=1)
        return [(h, self.ray.get(h)) for h in done]

    def close(self) -> None:
        try:
            self.ray.get([a.close.remote() for a in self.actors], timeout=30)
        finally:
            for a in self.actors:
                self.ray.kill(a)
        if self.started:
            self.ray.shutdown()


def _address() -> str | None:
    from strata.core.config import load_settings

    uri = load_settings().executor_uri
    return uri if uri.startswith("ray://") else None


class RayScorer:
    """A Ray actor holding one loaded model (its files written to a private directory)."""

    def __init__(self, files: dict[str, bytes], trusted: bool, runtime: str, threads: int):
        self.dir = batch_worker.init_from_files(files, trusted, runtime, threads)

    def score(self, table: pa.Table, proba: bool) -> pa.Table:
        return batch_worker.score(table, proba)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
