"""Adaptive batching of one served version, with Triton's dynamic batcher's semantics.

Requests queue on the event loop; the queue flushes when ``max_batch_size`` rows wait or the
oldest request has waited ``max_latency_ms`` — and at once when the model is idle (no batch of
this version predicting): a request never waits for company that is not coming, so light
traffic pays no ``max_latency_ms``, and under load requests gather while a batch predicts
(BentoML's adaptive batching). A flush concatenates the requests' checked
columns (numpy), predicts once in the predict pool (off the event loop) and scatters the rows
back to each request's future. Queue depth, batch size and queue time are metrics.

``on_batch`` (the router's, when the prediction log is on) gets each answered batch once, with
its concatenated inputs: the log queues the batch as one entry for the requests submitted with
a tag, and each of those gets back its slot in that entry (:meth:`Batcher.submit`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np

from strata.serving.models import Batching
from strata.serving.served import Prediction, ServedModel

if TYPE_CHECKING:
    from strata.serving.metrics import ServingMetrics

log = logging.getLogger("strata.serving")

Answer = tuple[Prediction, Any]
"""A request's rows of its batch's prediction, and its slot in the prediction log."""
_Item = tuple[dict[str, np.ndarray], int, "asyncio.Future[Answer]", float, Any]
OnBatch = Callable[
    [ServedModel, list[_Item], dict[str, np.ndarray], Prediction], Iterator[Any] | None
]
"""Called with a predicted batch (its items, inputs, prediction); returns the slots of the
items with a tag (a tuple), in order, or None when it logged none."""


class Batcher:
    def __init__(
        self,
        served: ServedModel,
        config: Batching,
        pool: Executor,
        metrics: ServingMetrics,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.served = served
        self.on_batch = on_batch
        self.config = config
        self.pool = pool
        self.pending: list[_Item] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        self.running = 0  # batches of this version predicting now
        self.soon = False  # a flush is scheduled for this loop turn
        self.metrics = metrics
        self.batch_rows = metrics.batch_size.labels(served.name, served.version)
        self.queue_time = metrics.queue_time.labels(served.name, served.version)
        self.depth = metrics.queue_depth.labels(served.name, served.version)

    async def submit(self, checked: dict[str, np.ndarray], rows: int, tag: Any = None) -> Answer:
        """The request's rows of its batch's prediction, and its log slot: what ``on_batch``
        gave it when ``tag`` is a tuple (the request is to be logged with the batch), else
        ``tag`` itself (None or False)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self.pending.append((checked, rows, future, time.perf_counter(), tag))
        self.rows += rows
        self.metrics.add(self.depth)
        if self.rows >= self.config.max_batch_size:
            self._flush()
        elif self.running == 0:  # idle: go now, with whatever arrives in this loop turn
            if not self.soon:
                self.soon = True
                loop.call_soon(self._flush)
        elif self.timer is None:
            self.timer = loop.call_later(self.config.max_latency_ms / 1000, self._flush)
        return await future

    def _flush(self) -> None:
        self.soon = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.rows = self.pending, [], 0
        if not batch:
            return
        now = time.perf_counter()
        metrics = self.metrics
        metrics.add(self.depth, -len(batch))
        for _, _, _, queued, _ in batch:
            metrics.observe(self.queue_time, now - queued)
        loop = asyncio.get_running_loop()
        self.running += 1
        work = loop.run_in_executor(self.pool, self._predict, batch)
        work.add_done_callback(lambda done: self._scatter(batch, done))

    def _predict(self, batch: list[_Item]) -> tuple[dict[str, np.ndarray], Prediction]:
        """The batch's inputs (concatenated) and its prediction."""
        if len(batch) == 1:
            merged = batch[0][0]
        else:
            names = list(batch[0][0])
            merged = {n: np.concatenate([item[0][n] for item in batch]) for n in names}
        return merged, self.served.predict(merged)

    def _scatter(
        self, batch: list[_Item], done: asyncio.Future[tuple[dict[str, np.ndarray], Prediction]]
    ) -> None:
        self.running -= 1
        if self.pending and self.running == 0 and not self.soon:
            self.soon = True  # what gathered while this batch predicted goes next
            asyncio.get_running_loop().call_soon(self._flush)
        error = done.exception()
        if error is not None:
            for _, _, future, _, _ in batch:
                if not future.done():
                    future.set_exception(error)
            return
        merged, pred = done.result()
        self.metrics.observe(self.batch_rows, len(pred.prediction))
        slots = None
        if self.on_batch is not None:
            try:
                slots = self.on_batch(self.served, batch, merged, pred)
            except Exception:  # the log never fails a request
                log.exception("prediction log: could not queue a batch of %s", self.served.name)
        start = 0
        for _, rows, future, _, tag in batch:
            end = start + rows
            part = Prediction(
                pred.prediction[start:end],
                None if pred.proba is None else pred.proba[start:end],
                pred.labels,
            )
            start = end
            slot = (next(slots) if slots is not None else None) if tag else tag
            if not future.done():
                future.set_result((part, slot))

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
