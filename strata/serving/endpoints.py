"""The endpoints one worker serves: loading, readiness, following aliases, atomic swaps.

Each worker loads its models itself, after it started (never in a parent that forks: the
OpenMP pool of LightGBM deadlocks in forked children). An endpoint is ready when its model is
loaded and warmed; one that fails to load is not ready and says why, while the others serve.

A background thread polls the registry every ``poll_seconds``: when an endpoint's alias
points at another version, that version is loaded and warmed beside the one serving, then
swapped in by replacing one reference. A request holds the model it started with, so no
request ever sees a half-swapped endpoint. Models named by traffic policies (canary, shadow,
fallback) load and follow the same way; a policy changed at runtime (the artifact store's
``serving/policies/<endpoint>.json``, written by the serving service) is picked up by the same
poll, after the models it names are loaded.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strata.core.errors import NotFound, StrataError, Unavailable
from strata.serving.models import (
    EndpointConfig,
    EndpointStatus,
    ModelRef,
    ServeConfig,
    TrafficPolicy,
    parse_ref,
    policy_refs,
)
from strata.serving.served import ServedModel, load_served, resolve_version

if TYPE_CHECKING:
    from strata.registry.service import RegistryService
    from strata.tracking.service import TrackingService

log = logging.getLogger("strata.serving")

PolicySource = Callable[[str], TrafficPolicy | None]
"""Reads an endpoint's runtime policy (None: keep the configured one)."""
SamplingSource = Callable[[str], float | None]
"""Reads a model's prediction log sampling rate (None: log every request)."""


@dataclass
class Endpoint:
    """One endpoint's state in this worker. ``models`` maps a reference (its text) to the
    version loaded for it; readers take one snapshot of the attributes they use."""

    config: EndpointConfig
    name: str
    ref: ModelRef
    policy: TrafficPolicy
    primary: ServedModel | None = None
    error: str | None = None
    models: dict[str, ServedModel] = field(default_factory=dict)
    policy_errors: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.primary is not None

    def served_versions(self) -> list[ServedModel]:
        seen: dict[tuple[str, str], ServedModel] = {}
        for m in [self.primary, *self.models.values()]:
            if m is not None:
                seen.setdefault((m.name, m.version), m)
        return list(seen.values())

    def by_version(self, version: str) -> ServedModel:
        """The loaded version ``version`` of the endpoint's model (the primary's or one a
        policy loaded); NotFound listing the loaded versions."""
        primary = self.primary
        if primary is not None and primary.version == version:
            return primary
        for m in self.models.values():
            if m.version == version and m.name == self.ref.name:
                return m
        loaded = sorted({m.version for m in self.served_versions() if m.name == self.ref.name})
        raise NotFound(
            f"Endpoint {self.name!r} does not serve version {version}; loaded: "
            f"{', '.join(loaded) or 'none'}",
            details={"endpoint": self.name, "version": version, "served": loaded},
        )

    def status(self) -> EndpointStatus:
        primary = self.primary
        return EndpointStatus(
            name=self.name,
            model=self.config.model,
            version=primary.version if primary else None,
            ready=primary is not None,
            error=self.error,
            flavor=primary.model.flavor if primary else None,
            runtime=primary.runtime if primary else None,
            loaded_versions=sorted({f"{m.name}/{m.version}" for m in self.served_versions()}),
            policy=self.policy,
            policy_errors=dict(self.policy_errors),
        )


class Endpoints:
    """Every endpoint of one worker, and the thread that follows aliases and policies."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        tracking: TrackingService,
        registry: RegistryService | None,
        policy_source: PolicySource | None = None,
        on_swap: Callable[[str], None] | None = None,
        on_status: Callable[[list[EndpointStatus]], None] | None = None,
        sampling_source: SamplingSource | None = None,
        freeze_heap: bool = False,
    ) -> None:
        self.config = config
        self.freeze_heap = freeze_heap
        """Keep the loaded models out of Python's full collections (see :meth:`_settle_heap`):
        for a serving process (``strata serve``), not for one that merely embeds endpoints."""
        self._dropped: list[weakref.ref[ServedModel]] = []
        self._frozen = False
        self.loaded = False
        """The first :meth:`load_all` is over (models warm, heap settled): readiness waits
        for it, so no probe says ready while the worker still has a collection to make."""
        self.tracking = tracking
        self.registry = registry
        self.policy_source = policy_source
        self.on_swap = on_swap
        self.on_status = on_status
        self.sampling_source = sampling_source
        self.sample_rates: dict[str, float] = {}
        """Per model name, the prediction log's sampling rate (shared with the router)."""
        self._reported: tuple[list[EndpointStatus], float] | None = None
        self.endpoints: dict[str, Endpoint] = {
            ep.endpoint: Endpoint(ep, ep.endpoint, ep.ref, ep.policy) for ep in config.endpoints
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one poll at a time (the thread, or a forced one)

    # -- lookups -----------------------------------------------------------------------
    def get(self, name: str) -> Endpoint:
        """The endpoint (or the model) called ``name``; NotFound listing what is served."""
        ep = self.endpoints.get(name)
        if ep is None:
            for candidate in self.endpoints.values():
                if candidate.ref.name == name:
                    return candidate
            served = sorted(self.endpoints)
            raise NotFound(
                f"No model {name!r} is served here; served: {', '.join(served)}",
                details={"model": name, "served": served},
            )
        return ep

    @property
    def ready(self) -> bool:
        return self.loaded and all(ep.ready for ep in self.endpoints.values())

    def statuses(self) -> list[EndpointStatus]:
        return [ep.status() for ep in self.endpoints.values()]

    # -- loading -----------------------------------------------------------------------
    def _load(
        self, ep: Endpoint, ref: ModelRef, version: str | None, *, policy: bool = False
    ) -> ServedModel:
        """Load and warm ``ref``. The endpoint's ``trusted`` covers its own model only: a
        model a traffic policy names (which an editor may change at runtime) always loads
        as data, so no policy can make the server run a pickle's code."""
        return load_served(
            ref,
            tracking=self.tracking,
            registry=self.registry,
            version=version,
            runtime=ep.config.runtime,
            trusted=ep.config.trusted and not policy,
        )

    def load_all(self) -> None:
        """Load and warm every endpoint's model; a failure marks that endpoint not ready."""
        before = self._loaded()
        for ep in self.endpoints.values():
            try:
                ep.primary = self._load(ep, ep.ref, None)
                ep.error = None
                log.info(
                    "serving %s: %s version %s (%s, warm %.0f ms)",
                    ep.name,
                    ep.ref.name,
                    ep.primary.version,
                    ep.primary.runtime,
                    ep.primary.warm_ms or 0,
                )
            except Exception as exc:
                ep.error = _describe(exc)
                log.error("endpoint %s could not load %s: %s", ep.name, ep.ref.text, ep.error)
            self._load_policy_models(ep, ep.policy)
            self._read_sampling(ep)
        self._settle_heap(before)
        self.loaded = True
        self.report()

    def _policy_refs(self, policy: TrafficPolicy) -> list[str]:
        return [ref for _, ref in policy_refs(policy)]

    def _load_policy_models(self, ep: Endpoint, policy: TrafficPolicy) -> bool:
        """Load the models ``policy`` names (kept ones reused); True when all loaded."""
        models: dict[str, ServedModel] = {}
        ok = True
        for text in self._policy_refs(policy):
            current = ep.models.get(text)
            ref = parse_ref(text)
            try:
                want = resolve_version(ref, self.registry) if ref.registered else None
                if current is not None and (want is None or current.version == want):
                    models[text] = current
                    continue
                models[text] = self._load(ep, ref, want, policy=True)
                ep.policy_errors.pop(text, None)
            except Exception as exc:
                ok = False
                ep.policy_errors[text] = _describe(exc)
                log.error("endpoint %s: policy model %s failed: %s", ep.name, text, exc)
                if current is not None:
                    models[text] = current
        ep.models = models  # one assignment: readers see the old dict or the new one
        return ok

    # -- following ---------------------------------------------------------------------
    def poll(self) -> None:
        """One round: swap in moved aliases, retry failed loads, apply changed policies."""
        with self._lock:
            before = self._loaded()
            for ep in self.endpoints.values():
                if self._stop.is_set():
                    return
                self._poll_endpoint(ep)
            self._settle_heap(before)
        self.report()

    # -- the heap ----------------------------------------------------------------------
    def _loaded(self) -> dict[int, weakref.ref[ServedModel]]:
        return {
            id(m): weakref.ref(m) for ep in self.endpoints.values() for m in ep.served_versions()
        }

    def _settle_heap(self, before: dict[int, weakref.ref[ServedModel]]) -> None:
        """Freeze the heap (``gc.freeze``) once the loaded versions are settled.

        A worker holds ~10⁵-10⁶ long-lived objects (the libraries' modules, the models): each
        full collection walks them all, a 0.1 s pause of every request in flight (the serving
        p99, docs/serving.md). Frozen, they are never walked. A version swapped or dropped
        since ``before`` must still be freed (a version and its batcher form a cycle): the
        heap is unfrozen and collected, and frozen again only once every dropped version is
        gone — a request still holding one keeps the heap unfrozen until a later poll."""
        if not self.freeze_heap:
            return
        now = self._loaded()
        self._dropped += [ref for key, ref in before.items() if key not in now]
        added = any(key not in before for key in now)
        if not (added or self._dropped or not self._frozen):
            return
        if self._dropped:
            gc.unfreeze()
            self._frozen = False
        gc.collect()
        self._dropped = [ref for ref in self._dropped if ref() is not None]
        if not self._dropped:
            gc.freeze()
            self._frozen = True

    def report(self) -> None:
        """Publish the statuses (``on_status``) when they changed or ``report_seconds``
        passed."""
        if self.on_status is None:
            return
        statuses = self.statuses()
        last = self._reported
        every = self.config.report_seconds
        if last is not None and last[0] == statuses and time.monotonic() - last[1] < every:
            return
        try:
            self.on_status(statuses)
            self._reported = (statuses, time.monotonic())
        except Exception as exc:
            log.warning("serving: could not publish endpoint statuses: %s", exc)

    def _poll_endpoint(self, ep: Endpoint) -> None:
        primary = ep.primary
        try:
            if primary is None:
                ep.primary = self._load(ep, ep.ref, None)
                ep.error = None
            elif ep.ref.follows:
                version = resolve_version(ep.ref, self.registry)
                if version != primary.version:
                    fresh = self._load(ep, ep.ref, version)  # loaded and warm beside the old
                    ep.primary = fresh  # the swap: one reference
                    log.info(
                        "endpoint %s: %s moved, version %s → %s",
                        ep.name,
                        ep.ref.text,
                        primary.version,
                        version,
                    )
                    if self.on_swap is not None:
                        self.on_swap(ep.name)
        except Exception as exc:  # the old version keeps serving
            if ep.primary is None:
                ep.error = _describe(exc)
            log.warning("endpoint %s: could not follow %s: %s", ep.name, ep.ref.text, exc)
        policy = ep.policy
        if self.policy_source is not None:
            try:
                stored = self.policy_source(ep.name)
            except Exception as exc:
                log.warning("endpoint %s: could not read its policy: %s", ep.name, exc)
                stored = None
            if stored is not None:
                policy = stored
        self._read_sampling(ep)
        if (policy != ep.policy or self._policy_refs(policy)) and (
            self._load_policy_models(ep, policy) or policy != ep.policy
        ):
            ep.policy = policy

    def _read_sampling(self, ep: Endpoint) -> None:
        """Refresh the sampling rate of every model the endpoint serves (kept as it was when
        the store cannot be read)."""
        if self.sampling_source is None:
            return
        names = {ep.ref.name, *(m.name for m in ep.models.values())}
        for name in names:
            try:
                rate = self.sampling_source(name)
            except Exception as exc:
                log.warning("endpoint %s: cannot read %s's sampling: %s", ep.name, name, exc)
                continue
            if rate is None:
                self.sample_rates.pop(name, None)
            else:
                self.sample_rates[name] = rate

    def start(self) -> None:
        """Start following aliases and policies in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="strata-follow", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.poll()
            except Exception:
                log.exception("serving: alias/policy poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StrataError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def wait_ready(endpoints: Endpoints, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not endpoints.ready and time.monotonic() < deadline:
        time.sleep(0.05)
    return endpoints.ready


def not_ready(ep: Endpoint) -> Unavailable:
    """The 503 of an endpoint with no model to answer (the serving app hides ``error``, which
    may name paths, buckets or URLs, from a caller that may only predict)."""
    return Unavailable(
        f"Endpoint {ep.name!r} is not ready: {ep.error or 'its model is loading'}",
        details={"endpoint": ep.name, "error": ep.error},
    )
