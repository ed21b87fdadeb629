"""Private work directories under ``$STRATA_HOME/tmp`` and the sweep of dead ones.

Ingests and uploads stage their files in a directory of their own before anything is
published, and ``runs:/`` model loads download into one (``model-``); the caller removes it
when done. A process killed meanwhile (SIGKILL, OOM, power)
cannot, so each directory records its owner (host, PID and the process's start time) in
``.owner``. :func:`sweep` removes a directory whose owner on this host is gone — the PID is
free or now belongs to a newer process — and, for directories of other hosts or without an
owner file, any older than a day. It runs whenever a new work directory is made, when the
server starts, and from ``strata gc``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNER_FILE = ".owner"
PREFIXES = ("ingest-", "upload-", "model-")
STALE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Swept:
    """What a sweep removed: directory names and their total size in bytes."""

    names: list[str]
    bytes: int


def _started(pid: int) -> float | None:
    import psutil  # here, not at import: metadata-only CLI commands don't need it

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def process_owner() -> dict[str, Any]:
    """This process as an owner of long work: host, PID and the PID's start time (a recycled
    PID is another process)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _started(pid)}


def owner_gone(owner: Any) -> bool:
    """Whether the process :func:`process_owner` described is known to be gone: it ran on this
    host and its PID is dead or reused. Another host's process, or a malformed owner: False
    (nothing here can tell)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    started = _started(pid)
    return started is None or started != owner.get("started")


def make_workdir(root: str | Path, prefix: str) -> str:
    """Create a fresh private directory ``<root>/<prefix>XXXX`` owned by this process, after
    sweeping dead ones. The caller removes it (``shutil.rmtree``) when done."""
    assert prefix in PREFIXES, prefix
    os.makedirs(root, exist_ok=True)
    sweep(root)
    path = tempfile.mkdtemp(prefix=prefix, dir=root)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid())}
    with open(os.path.join(path, OWNER_FILE), "w") as f:
        json.dump(owner, f)
    return path


def _dead(path: str, host: str, now: float) -> bool:
    try:
        with open(os.path.join(path, OWNER_FILE)) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        owner = None
    if isinstance(owner, dict) and owner.get("host") == host and isinstance(owner.get("pid"), int):
        return owner_gone(owner)
    # Another host's directory, or one whose owner file was never written: age decides.
    try:
        return os.stat(path).st_mtime < now - STALE_SECONDS
    except OSError:
        return False


def _size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def sweep(root: str | Path) -> Swept:
    """Remove the work directories under ``root`` whose owning process is gone."""
    names: list[str] = []
    size = 0
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return Swept([], 0)
    host, now = socket.gethostname(), time.time()
    for entry in entries:
        if not entry.name.startswith(PREFIXES) or not entry.is_dir(follow_symlinks=False):
            continue
        if _dead(entry.path, host, now):
            size += _size(entry.path)
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.exists(entry.path):
                names.append(entry.name)
    return Swept(sorted(names), size)
