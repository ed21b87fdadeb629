"""A `strata data ingest` killed with SIGKILL leaves no version, and its staging area under
STRATA_HOME/tmp does not outlive it: `strata gc` or the next ingest removes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import NotFound
from strata.core.staging import OWNER_FILE, make_workdir, sweep

ROWS = 3_000_000  # ~110 MB of CSV: seconds of work, so the kill lands mid-ingest


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "big.csv"
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "id": np.arange(ROWS),
            "x": rng.random(ROWS),
            "y": rng.integers(0, 1_000_000, ROWS),
            "city": rng.choice(np.array(["paris", "lyon", "nice", "lille"]), ROWS),
        }
    )
    pacsv.write_csv(table, path)
    return path


def _staging(home: Path) -> list[Path]:
    tmp = home / "tmp"
    return sorted(p for p in tmp.glob("ingest-*")) if tmp.exists() else []


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _kill_mid_ingest(home: Path, csv: Path) -> Path:
    """Start `strata data ingest` and SIGKILL it once its staging area holds data."""
    env = {**os.environ, "STRATA_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "strata.cli.main", "data", "ingest", str(csv), "--name", "big"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, f"ingest ended before the kill: {proc.stderr}"
            assert time.monotonic() < deadline, "the ingest never staged 1 MB"
            staged = _staging(home)
            if staged and _size(staged[0]) > 1_000_000:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()
    (orphan,) = _staging(home)
    assert (orphan / OWNER_FILE).exists()
    return orphan


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRATA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "strata.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_sigkilled_ingest_leaves_nothing_after_gc_or_the_next_ingest(
    tmp_path: Path, big_csv: Path
) -> None:
    home = tmp_path / "home"
    orphan = _kill_mid_ingest(home, big_csv)
    size = _size(orphan)
    client = Client(settings=Settings(home=home))
    try:
        with pytest.raises(NotFound):
            client.data.get_dataset("big")  # nothing half-published
    finally:
        client.close()

    done = _cli(home, "gc", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed"] == [orphan.name] and report["bytes"] >= size
    assert not orphan.exists() and _staging(home) == []
    again = _cli(home, "gc")
    assert "Nothing to remove" in again.stdout

    orphan = _kill_mid_ingest(home, big_csv)
    client = Client(settings=Settings(home=home))
    try:
        small = client.data.ingest(pd.DataFrame({"a": [1, 2]}), "small")
        assert small.rows == 2
        assert not orphan.exists(), "the next ingest sweeps the dead one's staging area"
        assert _staging(home) == []
    finally:
        client.close()


def test_sweep_keeps_live_owners_and_removes_recycled_pids(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    mine = Path(make_workdir(root, "ingest-"))
    (mine / "part.parquet").write_bytes(b"x" * 100)
    assert sweep(root).names == [] and mine.exists()  # this process is alive

    recycled = Path(make_workdir(root, "upload-"))
    owner = json.loads((recycled / OWNER_FILE).read_text())
    owner["started"] -= 1000  # same PID, an older process: the owner is gone
    (recycled / OWNER_FILE).write_text(json.dumps(owner))
    stranger = root / "ingest-from-elsewhere"
    stranger.mkdir()
    (stranger / OWNER_FILE).write_text(json.dumps({"host": "other", "pid": 1, "started": 0}))
    unrelated = root / "keep-me"
    unrelated.mkdir()

    swept = sweep(root)
    assert swept.names == [recycled.name]
    assert mine.exists() and stranger.exists() and unrelated.exists()
    day_old = time.time() - 25 * 3600
    os.utime(stranger, (day_old, day_old))
    assert sweep(root).names == ["ingest-from-elsewhere"]  # another host's: by age
    assert mine.exists()


def test_an_owner_record_that_is_not_one_is_never_taken_for_dead() -> None:
    """Owner records are read back from files and database rows: anything malformed, or
    another host's, must not make live work look abandoned."""
    import os
    import socket

    from strata.core.staging import owner_gone, process_owner

    me = process_owner()
    assert me["pid"] == os.getpid() and not owner_gone(me)
    host = socket.gethostname()
    for bad in (
        None,
        "x",
        [],
        {"host": host},
        {"host": host, "pid": "1"},
        {"host": host, "pid": True},
        {"host": "elsewhere", "pid": 1, "started": 0},
    ):
        assert owner_gone(bad) is False, bad
    assert owner_gone(me | {"started": me["started"] - 1000})  # same PID, another process
