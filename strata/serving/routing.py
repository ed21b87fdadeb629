"""Traffic policies applied to one request: cache, canary (sticky), fallback, shadow; the
predict itself (inline for small requests, else off the event loop; adaptive batching when
the endpoint asks), the prediction log and the per-version metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import operator
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from strata.core.errors import NotFound, StrataError
from strata.core.threads import name_os_thread
from strata.serving.batching import Batcher
from strata.serving.endpoints import Endpoint, not_ready
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
    slot: Any = None
    """Where the prediction log has this request's rows: ``(latency array, index)`` when its
    adaptive batch was logged as one entry (:meth:`Router.record` sets its latency there),
    False when the log's sampling left it out, None when :meth:`Router.record` logs it."""


LogAs = tuple[str, str, str, "str | None", float, int]
"""What the prediction log needs of a request answered in an adaptive batch, known before it
is predicted: request id, endpoint, path, entity key, start (``perf_counter``), body bytes."""
_TAG = operator.itemgetter(4)
_ROWS_OF = operator.itemgetter(1)


_V = TypeVar("_V")
KnownGood = tuple["weakref.ref[ServedModel]", Prediction]
"""A good answer the fallback keeps: the model that gave it (weakly: a swapped-out model is
freed) and its prediction."""


class _Cache(Generic[_V]):
    """LRU + TTL of answers by the digest of a request's inputs (``ttl`` None: kept until
    evicted): Outcomes in the response cache, :data:`KnownGood` in the fallback's
    store of good answers."""

    def __init__(self, max_entries: int, ttl: float | None) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.items: OrderedDict[bytes, tuple[float, _V]] = OrderedDict()

    def get(self, key: bytes) -> _V | None:
        hit = self.items.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self.items[key]
            return None
        self.items.move_to_end(key)
        return hit[1]

    def put(self, key: bytes, outcome: _V) -> None:
        expires = float("inf") if self.ttl is None else time.monotonic() + self.ttl
        self.items[key] = (expires, outcome)
        self.items.move_to_end(key)
        while len(self.items) > self.max_entries:
            self.items.popitem(last=False)


def input_digest(checked: dict[str, np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name, arr in checked.items():  # the name, dtype and shape, then the values
        h.update(
            b"%s\x00%s\x00%s\x00" % (name.encode(), arr.dtype.str.encode(), str(arr.shape).encode())
        )
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
    name_os_thread()
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
        self.caches: dict[str, _Cache[Outcome]] = {}
        """Per endpoint, its response cache (``policy.cache``)."""
        self.known_good: dict[str, _Cache[KnownGood]] = {}
        """Per endpoint, the last good answers its fallback may give (``fallback.cached``)."""
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

    @staticmethod
    def _cache(
        caches: dict[str, _Cache[_V]], endpoint: str, max_entries: int, ttl: float | None
    ) -> _Cache[_V]:
        """``endpoint``'s cache in ``caches``, made anew (empty) when its policy's size or
        TTL changed."""
        cache = caches.get(endpoint)
        if cache is None or cache.ttl != ttl or cache.max_entries != max_entries:
            cache = caches[endpoint] = _Cache(max_entries, ttl)
        return cache

    # -- the predict -------------------------------------------------------------------
    async def _predict(
        self,
        ep: Endpoint,
        served: ServedModel,
        checked: dict[str, np.ndarray],
        rows: int,
        log_as: LogAs | None = None,
    ) -> tuple[Prediction, Any]:
        """The prediction and the request's log slot (:attr:`Outcome.slot`). ``log_as``: the
        request's log fields, given when an answer from an adaptive batch is the request's
        answer (the log then queues the batch once, not each request)."""
        batching = ep.config.batching
        try:
            if batching.enabled and rows < batching.max_batch_size:
                batcher = served.batcher
                if batcher is None:
                    on_batch = None if self.predlog is None else self._record_batch
                    batcher = served.batcher = Batcher(
                        served, batching, self.pool, self.metrics, on_batch
                    )
                    self.batchers.add(batcher)
                tag: Any = None
                if log_as is not None and self.predlog is not None:
                    tag = False if self._sampled_out(served.name) else log_as
                return await batcher.submit(checked, rows, tag)
            metrics = self.metrics
            metrics.observe(metrics.child(metrics.batch_size, served.name, served.version), rows)
            if rows <= INLINE_ROWS:
                return served.predict(checked), None
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, served.predict, checked), None
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
            return (await self._predict(ep, served, checked, rows))[0]
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
        log_fields: tuple[str | None, float, int] | None = None,
    ) -> Outcome:
        """Route one request: returns what answered it and how. Raises InvalidInput for bad
        inputs (checked against the model that answers), NotFound, Unavailable (not
        ready), PredictFailed (the model raised). ``log_fields``: the request's entity key, start
        (``perf_counter``) and body bytes, when its answer will be sent as predicted (an
        adaptive batch's answer is then logged with its batch, see :attr:`Outcome.slot`)."""

        def log_as(path: str) -> LogAs | None:
            return None if log_fields is None else (request_id, ep.name, path, *log_fields)

        if version is not None:
            served = ep.by_version(version)
            checked = served.check(columns)
            rows = _rows(checked)
            path = "primary" if served is ep.primary else "canary"
            pred, slot = await self._predict(ep, served, checked, rows, log_as(path))
            return Outcome(served, pred, path, checked, slot)
        primary = ep.primary
        if primary is None:
            raise not_ready(ep)
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
            cache = self._cache(
                self.caches, ep.name, policy.cache.max_entries, policy.cache.ttl_seconds
            )
            digest = cache_key(served, checked)
            hit = cache.get(digest)
            if hit is not None:
                return Outcome(hit.served, hit.prediction, "cache", checked)
        fallback = policy.fallback
        slot = None
        if fallback is None:
            pred, slot = await self._predict(ep, served, checked, rows, log_as(path))
        else:  # a low-confidence answer is replaced after its predict: logged per request
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
            known = None
            if fallback.cached:  # the last good answers, by the inputs alone (any version)
                known = self._cache(self.known_good, ep.name, fallback.cache_entries, None)
                key = input_digest(checked)
                if reason is None:  # the model by weak reference: a swapped-out one is freed
                    known.put(key, (weakref.ref(served), pred))
                else:
                    good = known.get(key)
                    gave = None if good is None else good[0]()
                    if good is not None and gave is not None:
                        self.metrics.add(
                            self.metrics.child(self.metrics.fallbacks, ep.name, reason)
                        )
                        return Outcome(gave, good[1], "fallback_cache", checked)
            if reason is not None:
                backup = None if fallback.model is None else ep.models.get(fallback.model)
                if backup is None:
                    if reason == "low_confidence":
                        return Outcome(served, pred, path, checked)
                    what = "no answer of these inputs is cached" if known is not None else ""
                    if fallback.model is not None:
                        what = f"{what} and " if what else ""
                        what += "the fallback model is not loaded"
                    raise PredictFailed(f"the model failed ({reason}); {what}")
                self.metrics.add(self.metrics.child(self.metrics.fallbacks, ep.name, reason))
                checked = backup.check(columns)
                pred, slot = await self._predict(ep, backup, checked, rows, log_as("fallback"))
                served, path = backup, "fallback"
        if cache is not None:  # the inputs are the key's: the entry keeps the answer only
            cache.put(digest, Outcome(served, pred, path, {}))
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
        return Outcome(served, pred, path, checked, slot)

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
        ``matrix``: the ``[n, k]`` array the checked inputs are the columns of, in order. A
        request logged with its adaptive batch only gets its latency set in the batch's entry
        (as measured now, unless the writer already took the entry: then the one measured
        when its batch was predicted, see :meth:`_record_batch`)."""
        if self.predlog is None:
            return
        slot = outcome.slot
        if slot is not None:
            if slot:
                slot[0][slot[1]] = latency_ms
            return
        if self._sampled_out(outcome.served.name):
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

    def _sampled_out(self, model: str) -> bool:
        """Whether the log leaves this request of ``model`` out (monitoring's sample rate)."""
        rate = self.sample_rates.get(model)
        return rate is not None and (rate <= 0 or (rate < 1 and random.random() >= rate))

    def _record_batch(
        self,
        served: ServedModel,
        batch: list[Any],
        merged: dict[str, np.ndarray],
        pred: Prediction,
    ) -> Iterator[Any] | None:
        """The batcher's ``on_batch``: queue the rows of a predicted batch's tagged requests
        (:data:`LogAs`) as one entry of the prediction log; return their slots, in order:
        the entry's latency array (each request's latency until now, refined by
        :meth:`record` when its answer is sent) and the request's index in it. Numpy and C
        maps only: no Python code per row."""
        assert self.predlog is not None
        tags = list(map(_TAG, batch))
        logged = list(filter(None, tags))
        if not logged:
            return None
        sizes = np.fromiter(map(_ROWS_OF, batch), dtype=np.int64, count=len(batch))
        inputs, prediction, proba = merged, pred.prediction, pred.proba
        if len(logged) < len(batch):  # some sampled out (or logged per request)
            keep = np.fromiter(map(operator.truth, tags), dtype=bool, count=len(tags))
            rows = np.repeat(keep, sizes)
            inputs = {name: arr[rows] for name, arr in merged.items()}
            prediction = prediction[rows]
            proba = None if proba is None else proba[rows]
            sizes = sizes[keep]
        ids, endpoints, paths, keys, starts, bodies = zip(*logged, strict=True)
        latency = (time.perf_counter() - np.array(starts, dtype=np.float64)) * 1000.0
        self.predlog.record_batch(
            model=served.name,
            version=served.version,
            request_ids=ids,
            endpoints=endpoints,
            paths=paths,
            keys=keys,
            latency_ms=latency,
            sizes=sizes,
            inputs=inputs,
            prediction=prediction,
            proba=proba,
            body_bytes=sum(bodies),
        )
        return zip(itertools.repeat(latency), range(len(logged)), strict=False)

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
