"""The fluent tracking API: ``with strata.start_run(...)`` and module-level logging calls.

Metrics, params and tags are appended to an in-memory buffer of the active run (microseconds
per call: a cached key check, a tuple, a deque append) and written in batches by a background
thread — when a run's buffer reaches :data:`FLUSH_THRESHOLD` points, every
:data:`FLUSH_INTERVAL_S` seconds, when the run ends, on :func:`flush`, and at interpreter exit.
A clean exit loses nothing; a crash loses at most the unflushed buffer. Artifacts, inputs and
run creation/ending are written synchronously.

Errors of a background write (a param that conflicts with a value stored earlier, a deleted
run, an unreachable server after bounded retries) are never silent: the points concerned are
counted in :func:`dropped_points`, the error is kept in :func:`flush_errors`, and it is
raised — as the same error class — by the next fluent call or when the run ends.

The active-run stack is per process (not per thread): a callback thread logs into the run the
main thread started. A run ends FINISHED when its ``with`` block exits normally, FAILED when
it raises (the exception propagates), KILLED on Ctrl-C or SIGTERM. While a run is active in
the main thread, SIGTERM raises ``SystemExit(143)`` there (after chaining to a previously
installed Python handler), so ``with`` blocks unwind and the buffer is flushed; the previous
handler is restored when the outermost run ends. A forked child starts with no active run.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

from strata.core.errors import InvalidInput, StrataError
from strata.tracking import capture
from strata.tracking import fluent_services as _services
from strata.tracking import fluent_writer as _writer
from strata.tracking.fluent_checks import check_key as _check_key
from strata.tracking.fluent_checks import ok_keys as _ok_keys
from strata.tracking.fluent_checks import param_item, tag_value
from strata.tracking.fluent_services import HasTracking
from strata.tracking.fluent_signals import SigtermGuard
from strata.tracking.models import (
    DEFAULT_EXPERIMENT_ID,
    RunInfo,
    RunStatus,
    RunTag,
)
from strata.tracking.service import TrackingService

FLUSH_INTERVAL_S = 1.0
FLUSH_THRESHOLD = 10_000
MAX_BUFFERED = 500_000  # points of one run held in memory at most (backpressure beyond)
EXPERIMENT_ENV = "STRATA_EXPERIMENT_NAME"
_PARAM, _TAG = _writer.PARAM, _writer.TAG
_log = logging.getLogger("strata.tracking")
_time_ns = time.time_ns


class ActiveRun:
    """A run started by :func:`start_run`; a context manager that ends it on exit."""

    def __init__(self, tracking: TrackingService, info: RunInfo, chunk: int) -> None:
        self.tracking = tracking
        self.info = info
        self.run_id = info.run_id
        self.experiment_id = info.experiment_id
        self._metrics: deque[tuple[str, float, int, int]] = deque()
        self._other: deque[tuple[int, str, str]] = deque()
        self._params: dict[str, str] = {}
        self._chunk = chunk
        self._sampler: capture.SystemMetricsSampler | None = None
        self._source: dict[str, str] = {}

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            _end(self, RunStatus.FINISHED)
            _raise_pending()
            return
        try:  # the block's own exception propagates; our errors ride along as notes
            _end(self, _sigterm.status_for(exc))
        except Exception as end_exc:
            exc.add_note(f"strata: ending run {self.run_id} failed too: {end_exc}")
        errors = _take_errors() if _error_pending else []
        if errors:
            exc.add_note(
                f"strata: also, {len(errors)} buffered write(s) failed: {errors[0].message}"
            )

    def __repr__(self) -> str:
        return (
            f"<ActiveRun {self.run_id} ({self.info.run_name}) in experiment {self.experiment_id}>"
        )


# -- process-wide state ------------------------------------------------------------------------
_lock = threading.RLock()  # the run stack, signal handler, flusher start
_flush_lock = threading.Lock()  # one writer drains buffers at a time
_wake = threading.Event()
_stack: list[ActiveRun] = []
_top: ActiveRun | None = None  # _stack[-1], read without a lock on the hot path
_live: list[ActiveRun] = []  # runs whose buffers the flusher drains
_end_hooks: list[Callable[[ActiveRun, str], None]] = []


def on_end(hook: Callable[[ActiveRun, str], None]) -> None:
    """Call ``hook(run, status)`` when a run ends, while it is still the active run (autolog
    logs a PyTorch loop's model then). A failing hook is a warning; the run still ends."""
    if hook not in _end_hooks:
        _end_hooks.append(hook)


def remove_on_end(hook: Callable[[ActiveRun, str], None]) -> None:
    if hook in _end_hooks:
        _end_hooks.remove(hook)


_flusher: threading.Thread | None = None
_error_pending = False
_errors: deque[StrataError] = deque(maxlen=100)
_unraised: list[StrataError] = []
_dropped = 0
_sigterm = SigtermGuard()
_on_sigterm = _sigterm.handler  # what signal.getsignal(SIGTERM) returns while a run is active
_experiment_name: str | None = None


def dropped_points() -> int:
    """Metric points, params and tags this process buffered but could not write (cumulative)."""
    return _dropped


def flush_errors() -> list[StrataError]:
    """The most recent (up to 100) errors of buffered writes, oldest first."""
    return list(_errors)


def _take_errors() -> list[StrataError]:
    global _error_pending
    with _lock:
        errors, _unraised[:] = list(_unraised), []
        _error_pending = False
    return errors


def _raise_pending() -> None:
    """Raise the first unreported error of a buffered write (same class), if any."""
    if not _error_pending:
        return
    errors = _take_errors()
    if not errors:
        return
    first = errors[0]
    more = (
        f" (and {len(errors) - 1} more; see strata.tracking.fluent.flush_errors())"
        if len(errors) > 1
        else ""
    )
    raise type(first)(
        f"A buffered write failed in the background: {first.message}{more}. "
        f"{_dropped} point(s) were not written in all (strata.tracking.fluent.dropped_points())",
        details={**first.details, "dropped_points": _dropped},
    ) from first


def _record(run: ActiveRun, exc: BaseException, dropped: int) -> None:
    global _error_pending, _dropped
    err = (
        exc
        if isinstance(exc, StrataError)
        else StrataError(
            f"Writing {dropped} buffered point(s) to run {run.run_id} failed: "
            f"{type(exc).__name__}: {exc}",
            details={"run_id": run.run_id},
        )
    )
    with _lock:
        _dropped += dropped
        _errors.append(err)
        _unraised.append(err)
        _error_pending = True


# -- writing buffers ---------------------------------------------------------------------------
def _flush_run(run: ActiveRun) -> None:
    """Write everything buffered for ``run`` (the caller holds ``_flush_lock``)."""
    other, pop_o = run._other, run._other.popleft
    if other:
        items = [pop_o() for _ in range(len(other))]
        try:
            _writer.write_other(run, items, _record)
        except BaseException:
            other.extendleft(reversed(items))
            raise
    metrics, pop_m = run._metrics, run._metrics.popleft
    if metrics:
        _writer.write_metrics(run, [pop_m() for _ in range(len(metrics))], _record)


def _flush_all() -> None:
    with _flush_lock:
        for run in list(_live):
            _flush_run(run)


def flush() -> None:
    """Write every buffered point of every run now; raise the first failed write, if any."""
    _flush_all()
    _raise_pending()


def _flusher_loop() -> None:
    while True:
        _wake.wait(FLUSH_INTERVAL_S if _live else None)
        _wake.clear()
        try:
            _flush_all()
        except Exception as exc:  # never let the flusher die: report and carry on
            _log.error("strata: background flush failed: %s", exc)


def _ensure_flusher() -> None:
    global _flusher
    if _flusher is None or not _flusher.is_alive():
        _flusher = threading.Thread(target=_flusher_loop, name="strata-flusher", daemon=True)
        _flusher.start()


# -- services and experiments ------------------------------------------------------------------
def set_experiment(name: str, *, client: TrackingService | HasTracking | None = None) -> str:
    """Make ``name`` the experiment of later runs (created now if missing); returns its id."""
    global _experiment_name
    exp_id = _services.experiment_id_for(_services.resolve(client), name)
    _experiment_name = name
    return exp_id


# -- run lifecycle -----------------------------------------------------------------------------
def start_run(
    experiment: str | None = None,
    run_name: str | None = None,
    *,
    experiment_id: str | None = None,
    run_id: str | None = None,
    nested: bool = False,
    tags: Mapping[str, object] | None = None,
    description: str | None = None,
    log_system_metrics: bool = False,
    system_metrics_interval: float = 10.0,
    capture_environment: bool = True,
    client: TrackingService | HasTracking | None = None,
) -> ActiveRun:
    """Start a run (or resume ``run_id``) and make it the active run.

    The experiment is, in order: ``experiment_id``; the experiment named ``experiment``
    (created if missing); the one chosen by :func:`set_experiment`; ``$STRATA_EXPERIMENT_NAME``;
    the parent's (nested runs); the default experiment ``"0"``. ``client`` defaults to the
    parent's (nested runs), else ``strata.Client()`` (remote when ``STRATA_URI`` is set).
    With ``capture_environment``, git/entry-point/Python tags are recorded and the installed
    packages are stored as the artifact ``environment/requirements.txt``. With
    ``log_system_metrics``, ``system/...`` metrics are sampled every
    ``system_metrics_interval`` seconds. Raises InvalidInput when a run is active and
    ``nested`` is false.
    """
    _raise_pending()
    parent = _top
    if parent is not None and not nested:
        raise InvalidInput(
            f"Run {parent.run_id} ({parent.info.run_name}) is already active; end it first "
            "(strata.end_run() or leave its with-block), or pass nested=True to start a child "
            "run",
            details={"active_run_id": parent.run_id},
        )
    service = (
        parent.tracking if client is None and parent is not None else _services.resolve(client)
    )
    source: dict[str, str] = {}
    if capture_environment:  # a child reuses its parent's capture (no git subprocesses)
        source = parent._source if parent is not None and parent._source else capture.source_tags()
    all_tags = {**source, **{str(k): str(v) for k, v in (tags or {}).items()}}
    if description is not None:
        all_tags["mlflow.note.content"] = description
    logged: dict[str, str] = {}
    if run_id is not None:
        logged = service.get_run(run_id).params  # so a changed param fails at the call
        info = service.update_run(run_id, status=RunStatus.RUNNING)
        if all_tags:
            service.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
    else:
        name = experiment or _experiment_name or os.environ.get(EXPERIMENT_ENV)
        exp_id = experiment_id or (
            _services.experiment_id_for(service, name)
            if name
            else parent.experiment_id
            if parent is not None
            else DEFAULT_EXPERIMENT_ID
        )
        info = service.create_run(
            exp_id,
            run_name=run_name,
            tags=all_tags or None,
            parent_run_id=parent.run_id if parent else None,
        ).info
    run = ActiveRun(service, info, _writer.chunk_size(service))
    run._source = source
    run._params = logged
    try:
        if capture_environment and not (parent is not None and parent._source):
            try:
                service.log_artifact_stream(
                    run.run_id,
                    capture.REQUIREMENTS_ARTIFACT,
                    io.BytesIO(capture.requirements_txt().encode()),
                )
            except StrataError as exc:  # the run is usable without it; say so
                _log.warning(
                    "strata: could not store %s for run %s: %s",
                    capture.REQUIREMENTS_ARTIFACT,
                    run.run_id,
                    exc.message,
                )
        if log_system_metrics:
            run._sampler = capture.SystemMetricsSampler(
                run._metrics.extend, interval=system_metrics_interval
            ).start()
    except BaseException:
        service.end_run(run.run_id, RunStatus.FAILED)
        raise
    _push(run)
    return run


def _push(run: ActiveRun) -> None:
    global _top
    with _lock:
        if not _stack:
            _sigterm.install()
        _stack.append(run)
        _live.append(run)
        _top = run
        _ensure_flusher()
    _wake.set()


def _end(run: ActiveRun, status: RunStatus | str) -> None:
    """End ``run`` (first its still-active children) with ``status``; flush its buffer.

    If SIGTERM/Ctrl-C interrupts this, the run stays active and is ended again at exit.
    """
    with _lock:
        children = _stack[_stack.index(run) + 1 :] if run in _stack else []
    for child in reversed(children):
        _end(child, status)
    for hook in list(_end_hooks):
        try:
            hook(run, str(status))
        except Exception as exc:
            _log.warning("strata: a run-end hook failed for run %s: %s", run.run_id, exc)
    if run._sampler is not None:
        run._sampler.stop()
        run._sampler = None
    try:
        with _flush_lock:
            _flush_run(run)
        run.tracking.end_run(run.run_id, status)
    except Exception:
        _pop(run)  # the run leaves the stack; the caller sees the error
        raise
    _pop(run)


def _pop(run: ActiveRun) -> None:
    global _top
    with _lock:
        if run in _stack:
            _stack.remove(run)
        _top = _stack[-1] if _stack else None
        if not _stack:
            _sigterm.restore()
            _sigterm.terminated = False
    with _flush_lock:  # a point that raced the end (another thread) is written, not lost
        _flush_run(run)
        if run in _live:
            _live.remove(run)


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run (no-op without one); raise a failed buffered write, if any."""
    run = _top
    if run is not None:
        _end(run, status)
    _raise_pending()


def active_run() -> ActiveRun | None:
    """The innermost active run, or None."""
    return _top


def _auto_run() -> ActiveRun:
    """Start a run for logging calls made outside any run (ended FINISHED at exit)."""
    with _lock:
        if _top is not None:
            return _top
        return start_run()


def _at_exit() -> None:
    last = getattr(sys, "last_type", None)
    status = (
        RunStatus.KILLED
        if _sigterm.terminated or last is KeyboardInterrupt
        else (RunStatus.FAILED if last is not None else RunStatus.FINISHED)
    )
    try:
        while _top is not None:
            _end(_top, status)
        _flush_all()
    except BaseException as exc:
        sys.stderr.write(f"strata: could not end the active run at exit: {exc}\n")
    for err in _take_errors():
        sys.stderr.write(f"strata: a buffered write failed: {err.message}\n")
    _services.close_default(_live)


def _after_fork_in_child() -> None:
    global _lock, _flush_lock, _wake, _top, _flusher, _error_pending
    _lock, _flush_lock, _wake = threading.RLock(), threading.Lock(), threading.Event()
    _stack.clear()
    _live.clear()
    _unraised.clear()
    _top = _flusher = None
    _services.forget_default()  # the parent's connections are not ours to use
    _error_pending = False


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)


# -- logging calls -----------------------------------------------------------------------------
def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    """Buffer one metric point of the active run (one is started if none is active).

    ``step`` defaults to 0, ``timestamp`` (epoch ms) to now. NaN and ±inf are kept.
    Raises InvalidInput for a bad key or a non-numeric value, and the error of an earlier
    failed buffered write, if any.
    """
    if _error_pending:
        _raise_pending()
    run = _top or _auto_run()
    if key not in _ok_keys:
        _check_key(key, "metric")
    buf = run._metrics
    try:  # a plain tuple (~10x cheaper than the named tuple); typed as Metric at flush time
        buf.append(
            (
                key,
                float(value),
                _time_ns() // 1_000_000 if timestamp is None else int(timestamp),
                0 if step is None else int(step),
            )
        )
    except (TypeError, ValueError):
        raise InvalidInput(
            f"Metric {key!r}: value must be a number and step/timestamp "
            f"integers, got value={value!r}, step={step!r}",
            details={"key": key},
        ) from None
    if len(buf) >= FLUSH_THRESHOLD:
        if not _wake.is_set():  # set() contends with the waking flusher: once is enough
            _wake.set()
        if len(buf) >= MAX_BUFFERED:  # the writer cannot keep up: the caller waits for it
            _flush_all()


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    """Buffer several metrics with one step and timestamp (see :func:`log_metric`)."""
    ts = _time_ns() // 1_000_000 if timestamp is None else timestamp
    for key, value in metrics.items():
        log_metric(key, value, step, ts)


def log_param(key: str, value: object) -> str:
    """Buffer one param (stored as ``str(value)``); returns that string.

    Logging the same value again is a no-op; a different value raises Conflict at once when
    this process logged the first one, else from the background write (see module doc).
    """
    return log_params({key: value})[key]


def log_params(params: Mapping[str, object]) -> dict[str, str]:
    """Buffer several params (all are checked before any is buffered)."""
    if _error_pending:
        _raise_pending()
    run = _top or _auto_run()
    new = [
        kv
        for k, v in params.items()
        if (kv := param_item(run._params, run.run_id, k, v)) is not None
    ]
    for k, v in new:
        run._params[k] = v
        run._other.append((_PARAM, k, v))
    return {k: str(v) for k, v in params.items()}


def set_tag(key: str, value: object) -> None:
    """Buffer one tag of the active run (tags may be overwritten; the last value wins)."""
    set_tags({key: value})


def set_tags(tags: Mapping[str, object]) -> None:
    """Buffer several tags (all are checked before any is buffered)."""
    if _error_pending:
        _raise_pending()
    run = _top or _auto_run()
    items = [(_TAG, key, tag_value(key, value)) for key, value in tags.items()]
    run._other.extend(items)


def current_run() -> ActiveRun:
    """The active run (one is started if none is), after raising any pending flush error."""
    _raise_pending()
    return _top or _auto_run()


from strata.tracking.fluent_artifacts import (  # noqa: E402 - re-exported; it imports us
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_input,
    log_table,
    log_text,
)

__all__ = [
    "ActiveRun",
    "active_run",
    "dropped_points",
    "end_run",
    "flush",
    "flush_errors",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "set_experiment",
    "set_tag",
    "set_tags",
    "start_run",
]
