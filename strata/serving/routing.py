"""Traffic policies applied to one request: cache, canary (sticky), fallback, shadow; the
predict itself (inline for small requests, else off the event loop; adaptive batching when
the endpoint asks), the prediction log and the per-version metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from strata.core.errors import NotFound, StrataError, Unavailable
from strata.serving.batching import Batcher
from strata.serving.endpoints import Endpoint
from strata.serving.served import Prediction, ServedModel

if TYPE_CHECKING:
    from strata.serving.metrics import ServingMetrics
    from strata.serving.predlog import PredictionLog

log = logging.getLogger("strata.serving")

SHADOW_IN_FLIGHT = 64
"""Shadow predictions a worker runs at once; a mirror beyond that is dropped and counted
(``strata_serving_shadow_dropped_total``), so a slow candidate never piles up tasks."""

INLINE_ROWS = 64
"""Requests up to this many rows predict on the event loop (a booster answers one row in
~70 µs; a thread hop costs about as much); larger ones run in the predict pool."""


PREDICT_THREADS = 2
"""Threads of a worker's predict pool (batches and large requests)."""


class PredictFailed(Exception):
    """The model raised while predicting (a 500 carrying the request id)."""


@dataclass
class Outcome:
    served: ServedModel
    prediction: Prediction
    path: str
    checked: dict[str, np.ndarray]


class _Cache:
    """LRU + TTL of predictions by the digest of a request's inputs."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.items: OrderedDict[bytes, tuple[float, Outcome]] = OrderedDict()

    def get(self, key: bytes) -> Outcome | None:
        hit = self.items.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self.items[key]
            return None
        self.items.move_to_end(key)
        return hit[1]

    def put(self, key: bytes, outcome: Outcome) -> None:
        self.items[key] = (time.monotonic() + self.ttl, outcome)
        self.items.move_to_end(key)
        while len(self.items) > self.max_entries:
            self.items.popitem(last=False)


def input_digest(checked: dict[str, np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name, arr in checked.items():
        h.update(name.encode())
        h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
    return h.digest()


def cache_key(served: ServedModel, checked: dict[str, np.ndarray]) -> bytes:
    """The response cache's key: the model's name and version, then the inputs' digest (a
    canary of another model with the same version number never shares an entry)."""
    return b"%s\x00%s\x00%s" % (
        served.name.encode(),
        served.version.encode(),
        input_digest(checked),
    )


def _limit_threads(threads: int) -> None:
    """The predict pool's threads (large requests) use ``threads`` OpenMP threads; the
    event loop's thread keeps the worker's pinned count (1: small requests). OpenMP's
    thread count is per calling thread, so one setting never races the other."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="openmp")
    except Exception as exc:  # no OpenMP runtime loaded: nothing to size
        log.debug("serving: could not size the predict pool's OpenMP threads: %s", exc)


def bucket(value: str) -> float:
    """A stable position in [0, 1) for a sticky key."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Router:
    """Runs requests through their endpoint's policy (one per worker)."""

    def __init__(
        self,
        metrics: ServingMetrics,
        predlog: PredictionLog | None,
        *,
        threads: int = 1,
        large_batch_threads: int | None = None,
    ) -> None:
        self.metrics = metrics
        self.predlog = predlog
        self.threads = threads
        self.large_batch_threads = large_batch_threads or threads
        self.pool = ThreadPoolExecutor(
            max_workers=PREDICT_THREADS,
            thread_name_prefix="strata-predict",
            initializer=_limit_threads,
            initargs=(self.large_batch_threads,),
        )
        self.caches: dict[str, _Cache] = {}
        self.batchers: weakref.WeakSet[Batcher] = weakref.WeakSet()
        """Every live batcher (each hangs on its served version: one swapped out goes with
        it); closed with the router."""
        self.shadow_tasks: set[asyncio.Task[None]] = set()
        self.sample_rates: dict[str, float] = {}
        """Per model name, the share of requests the prediction log keeps (monitoring's
        setting, read by the endpoints' poll); absent means all."""
        self.stats: dict[str, dict[str, float]] = {}
        """Per endpoint, this worker's totals since it started: requests, errors,
        latency_s (summed) and answers by path; published with the endpoint reports."""

    # -- the predict -------------------------------------------------------------------
    async def _predict(
        self, ep: Endpoint, served: ServedModel, checked: dict[str, np.ndarray], rows: int
    ) -> Prediction:
        batching = ep.config.batching
        try:
            if batching.enabled and rows < batching.max_batch_size:
                batcher = served.batcher
                if batcher is None:
                    batcher = served.batcher = Batcher(served, batching, self.pool, self.metrics)
                    self.batchers.add(batcher)
                return await batcher.submit(checked, rows)
            metrics = self.metrics
            metrics.observe(metrics.child(metrics.batch_size, served.name, served.version), rows)
            if rows <= INLINE_ROWS:
                return served.predict(checked)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, served.predict, checked)
        except StrataError:
            raise
        except Exception as exc:
            raise PredictFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _timed(
        self,
        ep: Endpoint,
        served: ServedModel,
        checked: dict[str, np.ndarray],
        rows: int,
        timeout_ms: float | None,
    ) -> Prediction:
        if timeout_ms is None:
            return await self._predict(ep, served, checked, rows)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, served.predict, checked)
        try:
            return await asyncio.wait_for(future, timeout_ms / 1000)
        except TimeoutError:
            raise
        except StrataError:
            raise
        except Exception as exc:
            raise PredictFailed(f"{type(exc).__name__}: {exc}") from exc

    # -- a request ---------------------------------------------------------------------
    async def run(
        self,
        ep: Endpoint,
        columns: dict[str, np.ndarray] | np.ndarray,
        *,
        version: str | None,
        request_id: str,
        sticky: str | None,
    ) -> Outcome:
        """Route one request: returns what answered it and how. Raises InvalidInput for bad
        inputs (checked against the model that answers), NotFound, Unavailable (not
        ready), PredictFailed (the model raised)."""
        if version is not None:
            served = ep.by_version(version)
            checked = served.check(columns)
            rows = _rows(checked)
            pred = await self._predict(ep, served, checked, rows)
            path = "primary" if served is ep.primary else "canary"
            return Outcome(served, pred, path, checked)
        primary = ep.primary
        if primary is None:
            raise Unavailable(
                f"Endpoint {ep.name!r} is not ready: {ep.error or 'its model is loading'}",
                details={"endpoint": ep.name, "error": ep.error},
            )
        policy = ep.policy
        served, path = primary, "primary"
        if policy.canary:
            position = bucket(sticky if sticky is not None else request_id)
            edge = 0.0
            models = ep.models
            for target in policy.canary:
                edge += target.weight
                if position < edge:
                    candidate = models.get(target.model)
                    if candidate is not None:
                        served, path = candidate, "canary"
                    break
        checked = served.check(columns)
        rows = _rows(checked)
        cache = None
        digest = b""
        if policy.cache is not None:
            cache = self.caches.get(ep.name)
            if cache is None or cache.ttl != policy.cache.ttl_seconds:
                cache = self.caches[ep.name] = _Cache(
                    policy.cache.max_entries, policy.cache.ttl_seconds
                )
            digest = cache_key(served, checked)
            hit = cache.get(digest)
            if hit is not None:
                return Outcome(hit.served, hit.prediction, "cache", checked)
        fallback = policy.fallback
        if fallback is None:
            pred = await self._predict(ep, served, checked, rows)
        else:
            reason = None
            try:
                pred = await self._timed(ep, served, checked, rows, fallback.timeout_ms)
                if (
                    fallback.min_confidence is not None
                    and pred.proba is not None
                    and rows
                    and float(pred.proba.max(axis=1).min()) < fallback.min_confidence
                ):
                    reason = "low_confidence"
            except TimeoutError:
                reason = "timeout"
            except PredictFailed as exc:
                reason = "error"
                log.warning("endpoint %s: primary failed, falling back: %s", ep.name, exc)
            if reason is not None:
                backup = ep.models.get(fallback.model)
                if backup is None:
                    if reason == "low_confidence":
                        return Outcome(served, pred, path, checked)
                    raise PredictFailed(f"the model failed ({reason}) and no fallback is loaded")
                self.metrics.add(self.metrics.child(self.metrics.fallbacks, ep.name, reason))
                checked = backup.check(columns)
                pred = await self._predict(ep, backup, checked, rows)
                served, path = backup, "fallback"
        if cache is not None:
            cache.put(digest, Outcome(served, pred, path, checked))
        shadow = policy.shadow
        if shadow is not None and (shadow.fraction >= 1 or random.random() < shadow.fraction):
            mirror = ep.models.get(shadow.model)
            if mirror is not None and len(self.shadow_tasks) >= SHADOW_IN_FLIGHT:
                self.metrics.add(self.metrics.child(self.metrics.shadow_dropped, ep.name))
                stats = self.stats.setdefault(ep.name, {})
                stats["shadow_dropped"] = stats.get("shadow_dropped", 0.0) + 1
            elif mirror is not None:
                task = asyncio.get_running_loop().create_task(
                    self._shadow(ep, mirror, columns, request_id, sticky)
                )
                self.shadow_tasks.add(task)
                task.add_done_callback(self.shadow_tasks.discard)
        return Outcome(served, pred, path, checked)

    async def _shadow(
        self,
        ep: Endpoint,
        target: ServedModel,
        columns: dict[str, np.ndarray] | np.ndarray,
        request_id: str,
        sticky: str | None,
    ) -> None:
        start = time.perf_counter()
        try:
            checked = target.check(columns)
            loop = asyncio.get_running_loop()
            pred = await loop.run_in_executor(self.pool, target.predict, checked)
        except Exception as exc:  # never reaches the caller
            self.metrics.add(
                self.metrics.child(self.metrics.shadow_errors, ep.name, target.name, target.version)
            )
            log.info("endpoint %s: shadow %s failed: %s", ep.name, target.version, exc)
            return
        elapsed = (time.perf_counter() - start) * 1000
        stats = self.stats.setdefault(ep.name, {})
        stats["shadow"] = stats.get("shadow", 0.0) + 1
        self.metrics.add(
            self.metrics.child(
                self.metrics.requests,
                ep.name,
                target.name,
                target.version,
                "shadow",
                "shadow",
                "200",
            )
        )
        self.record(ep, Outcome(target, pred, "shadow", checked), request_id, elapsed, sticky)

    def record(
        self,
        ep: Endpoint,
        outcome: Outcome,
        request_id: str,
        latency_ms: float,
        key: str | None,
        body_bytes: int | None = None,
        matrix: np.ndarray | None = None,
    ) -> None:
        """The prediction log's rows of one answered request (never blocks), sampled at the
        model's rate (monitoring's ``sample_rate``); ``body_bytes``: the request body's
        length (the log's byte cap, :func:`strata.serving.predlog.request_bytes`);
        ``matrix``: the ``[n, k]`` array the checked inputs are the columns of, in order."""
        if self.predlog is None:
            return
        rate = self.sample_rates.get(outcome.served.name)
        if rate is not None and (rate <= 0 or (rate < 1 and random.random() >= rate)):
            return
        self.predlog.record(
            request_id=request_id,
            model=outcome.served.name,
            version=outcome.served.version,
            endpoint=ep.name,
            path=outcome.path,
            latency_ms=latency_ms,
            inputs=outcome.checked,
            prediction=outcome.prediction.prediction,
            proba=outcome.prediction.proba,
            entity_key=key,
            body_bytes=body_bytes,
            matrix=matrix,
        )

    def start_pool(self) -> None:
        """Start the predict pool's threads now (each sizes its OpenMP pool as it starts,
        ~10 ms holding the GIL), so the first batches under traffic do not pay for it. Call
        it once the models are loaded: their OpenMP runtime must be there to be sized."""
        waits = [self.pool.submit(time.sleep, 0.01) for _ in range(PREDICT_THREADS)]
        for wait in waits:
            wait.result()

    def close(self) -> None:
        for batcher in list(self.batchers):
            batcher.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _rows(checked: dict[str, np.ndarray]) -> int:
    for arr in checked.values():
        return len(arr)
    return 0


def not_served(name: str, served: list[str]) -> NotFound:
    return NotFound(
        f"No model {name!r} is served here; served: {', '.join(served)}",
        details={"model": name, "served": served},
    )
