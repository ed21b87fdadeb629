"""What a run records about where it ran: code version, entry point, environment, system load.

* :func:`source_tags` — git commit, dirty flag, branch and remote of the caller's repository
  (``git`` subprocesses with short timeouts; no git or no repository simply yields no git
  tags), the entry point and its type, the Python version and the platform.
* :func:`requirements_txt` — the installed distributions as ``name==version`` lines, read with
  :mod:`importlib.metadata` (no pip subprocess); the fluent API stores it as the artifact
  :data:`REQUIREMENTS_ARTIFACT`.
* :class:`SystemMetricsSampler` — a daemon thread sampling CPU, memory, disk and (when
  ``pynvml`` is importable and a GPU answers) GPU use every ``interval`` seconds, handing
  ``system/...`` metric points to a callback.

Tag keys follow MLflow's names where MLflow has one (``mlflow.source.*``), so the MLflow
client and UI show them unchanged; the rest are ``strata.*``. A remote URL never keeps its
credentials (``https://user:token@host/...`` is recorded as ``https://host/...``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from strata.tracking.models import Metric

TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_GIT_BRANCH = "mlflow.source.git.branch"
TAG_GIT_REPO_URL = "mlflow.source.git.repoURL"
TAG_GIT_DIRTY = "strata.source.git.dirty"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_PYTHON_VERSION = "strata.python.version"
TAG_PLATFORM = "strata.platform"
REQUIREMENTS_ARTIFACT = "environment/requirements.txt"
GIT_TIMEOUT_S = 2.0

_DIST_INFO_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")
_USERINFO_RE = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@]*@")


# -- git ---------------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> str | None:
    """stdout of one git command (stripped), or None if git is absent, fails or times out."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def strip_credentials(url: str) -> str:
    """``url`` without a ``user[:password]@`` part (``scheme://`` URLs only)."""
    return _USERINFO_RE.sub(lambda m: m["scheme"], url)


def git_info(path: str | Path | None = None) -> dict[str, str]:
    """Git state of the repository containing ``path`` (default: the working directory).

    Returns ``{"commit", "dirty", "branch", "remote"}`` with the keys that could be read;
    ``dirty`` is ``"true"`` when tracked files differ from the commit (untracked files do not
    count); ``remote`` is the URL of ``origin`` (else the first remote) without credentials.
    An empty dict when git is not installed or ``path`` is not inside a work tree.
    """
    where = Path(path) if path is not None else Path.cwd()
    if where.is_file():
        where = where.parent
    commit = _git(where, "rev-parse", "HEAD")
    if not commit:
        return {}
    info = {"commit": commit}
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        info["dirty"] = "true" if status else "false"
    branch = _git(where, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":
        info["branch"] = branch
    remotes = (_git(where, "remote") or "").split()
    if remotes:
        name = "origin" if "origin" in remotes else remotes[0]
        url = _git(where, "remote", "get-url", name)
        if url:
            info["remote"] = strip_credentials(url)
    return info


# -- entry point and interpreter ---------------------------------------------------------------
def entry_point() -> tuple[str, str]:
    """``(name, type)`` of what started this process.

    ``type`` is ``NOTEBOOK`` under IPython/Jupyter, ``LOCAL`` for a script or ``-m`` module
    (name = its absolute path), ``INTERACTIVE`` for a REPL or ``-c`` (name = ``<stdin>`` or
    ``-c``).
    """
    if "ipykernel" in sys.modules or "IPython" in sys.modules:
        with contextlib.suppress(Exception):
            from IPython import get_ipython

            if get_ipython() is not None:
                return os.environ.get("JPY_SESSION_NAME", "<notebook>"), "NOTEBOOK"
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-"):
        return "<stdin>", "INTERACTIVE"
    if argv0 == "-c":
        return "-c", "INTERACTIVE"
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    name = main_file if isinstance(main_file, str) else argv0
    return str(Path(name).resolve()), "LOCAL"


def source_tags(path: str | Path | None = None) -> dict[str, str]:
    """Tags describing the code and interpreter of this process.

    Git is read from ``path``, else from the entry-point script's directory, else from the
    working directory.
    """
    name, kind = entry_point()
    tags = {
        TAG_SOURCE_NAME: name,
        TAG_SOURCE_TYPE: kind,
        TAG_PYTHON_VERSION: platform.python_version(),
        TAG_PLATFORM: platform.platform(terse=True),
    }
    where: Path | None = Path(path) if path is not None else None
    if where is None and kind == "LOCAL" and Path(name).exists():
        where = Path(name).parent
    git = git_info(where)
    for key, tag in (
        ("commit", TAG_GIT_COMMIT),
        ("dirty", TAG_GIT_DIRTY),
        ("branch", TAG_GIT_BRANCH),
        ("remote", TAG_GIT_REPO_URL),
    ):
        if key in git:
            tags[tag] = git[key]
    return tags


_requirements_cache: str | None = None
_requirements_lock = threading.Lock()


def requirements_txt(*, refresh: bool = False) -> str:
    """Installed distributions as sorted ``name==version`` lines (a requirements file).

    The first call reads the environment's metadata (tens of ms); later calls return the
    same text unless ``refresh`` is true. The header names the interpreter.
    """
    global _requirements_cache
    with _requirements_lock:
        if _requirements_cache is None or refresh:
            pins: dict[str, str] = {}
            for dist in importlib.metadata.distributions():
                # A wheel's ``<name>-<version>.dist-info`` directory names both; parsing
                # it skips reading every METADATA file (40 ms for 170 packages).
                folder = getattr(getattr(dist, "_path", None), "name", "")
                match = _DIST_INFO_RE.match(folder)
                if match:
                    name, version = match["name"], match["version"]
                else:
                    name = dist.metadata["Name"] if dist.metadata else None
                    version = dist.version
                if name:
                    key = re.sub(r"[-_.]+", "-", name).lower()
                    pins.setdefault(key, f"{name}=={version}")
            lines = [f"# python {platform.python_version()} ({sys.executable})"]
            lines += [pins[k] for k in sorted(pins)]
            _requirements_cache = "\n".join(lines) + "\n"
        return _requirements_cache


# -- system metrics ----------------------------------------------------------------------------
def _gpu_handles() -> Iterator[tuple[int, Any]]:
    """(index, handle) of each NVIDIA GPU, empty when pynvml is missing or no driver answers."""
    try:
        import pynvml
    except ImportError:
        return
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # no driver / no device: nothing to sample
        return
    for i in range(count):
        with contextlib.suppress(Exception):
            yield i, pynvml.nvmlDeviceGetHandleByIndex(i)


def sample_system_metrics(disk_path: str | Path = "/") -> dict[str, float]:
    """One sample of system load as ``{"system/<name>": value}``.

    CPU in percent since the previous call (the first call of a process reads 0.0), memory
    and disk in megabytes and percent, GPU utilisation (percent) and memory (megabytes) per
    device when ``pynvml`` is importable.
    """
    import psutil

    mb = 1024.0 * 1024.0
    vm = psutil.virtual_memory()
    out = {
        "system/cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
        "system/system_memory_usage_megabytes": (vm.total - vm.available) / mb,
        "system/system_memory_usage_percentage": float(vm.percent),
    }
    with contextlib.suppress(OSError):
        disk = psutil.disk_usage(str(disk_path))
        out["system/disk_usage_megabytes"] = disk.used / mb
        out["system/disk_available_megabytes"] = disk.free / mb
        out["system/disk_usage_percentage"] = float(disk.percent)
    for i, handle in _gpu_handles():
        with contextlib.suppress(Exception):
            import pynvml

            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out[f"system/gpu_{i}_utilization_percentage"] = float(util.gpu)
            out[f"system/gpu_{i}_memory_usage_megabytes"] = float(mem.used) / mb
            out[f"system/gpu_{i}_memory_usage_percentage"] = 100.0 * mem.used / mem.total
    return out


class SystemMetricsSampler:
    """A daemon thread that samples :func:`sample_system_metrics` every ``interval`` seconds.

    Each sample becomes metric points with ``step`` = the sample number (0, 1, ...) and the
    sampling time as timestamp, handed to ``sink`` (which must be cheap and thread-safe, e.g.
    appending to a buffer). The first sample is taken after one interval, so CPU percent
    covers a whole interval. :meth:`stop` takes a last sample when none was taken yet, so a
    run shorter than the interval still records one point per metric.
    """

    def __init__(
        self,
        sink: Callable[[list[Metric]], None],
        interval: float = 10.0,
        disk_path: str | Path = "/",
    ) -> None:
        if interval <= 0:
            from strata.core.errors import InvalidInput

            raise InvalidInput(
                f"system metrics interval must be > 0 seconds, got {interval!r}",
                details={"field": "interval"},
            )
        self.sink = sink
        self.interval = float(interval)
        self.disk_path = disk_path
        self.samples = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="strata-system-metrics", daemon=True
        )

    def start(self) -> SystemMetricsSampler:
        import psutil

        psutil.cpu_percent(interval=None)  # prime: the next call measures from here
        self._thread.start()
        return self

    def sample_once(self) -> None:
        """Take one sample now and hand it to the sink (errors are counted, not raised)."""
        try:
            values = sample_system_metrics(self.disk_path)
        except Exception:  # a transient psutil failure must not kill the run
            self.errors += 1
            return
        ts = time.time_ns() // 1_000_000
        step = self.samples
        self.samples += 1
        self.sink([Metric(k, v, ts, step) for k, v in values.items()])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_once()

    def stop(self) -> None:
        """Stop sampling (joins the thread; takes one sample if none was taken yet)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 5.0)
        if self.samples == 0:
            self.sample_once()
