"""The `strata` command starts fast: heavy libraries load only when a command needs them.

Not a timed test (a busy CI machine makes timings flaky); it checks what the command
imported, in a fresh interpreter. `benchmarks/cli_startup.py` measures the time itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "sqlalchemy",
    "alembic",
    "pandas",
    "pyarrow",
    "duckdb",
    "numpy",
    "httpx",
    "fsspec",
    "fastapi",
    "uvicorn",
    "yaml",
)

_PROBE = """
import json, sys
sys.argv = ["strata", *sys.argv[1:]]
from strata.cli.main import main
try:
    main()
except SystemExit:
    pass
print("\\n" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(home: Path, *args: str) -> set[str]:
    """The top-level modules `strata ARGS` imported (the real entry point, a new process)."""
    return {m.split(".")[0] for m in modules_of(home, *args)}


def modules_of(home: Path, *args: str, uri: str = "") -> set[str]:
    """Every module `strata ARGS` imported, submodules included (against ``uri`` if given)."""
    env = {**os.environ, "STRATA_HOME": str(home), "STRATA_URI": uri}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True, timeout=120
    )
    last = done.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("runs", "--help"),
        ("data", "ingest", "--help"),
        ("models", "predict", "--help"),
        ("predict", "batch", "--help"),
        ("predict", "stream", "--help"),
        ("deploy", "build", "--help"),
    ],
    ids=" ".join,
)
def test_help_imports_nothing_heavy(args: tuple[str, ...], tmp_path: Path) -> None:
    loaded = loaded_by(tmp_path, *args)
    assert "typer" in loaded  # the probe saw the command run
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_import_strata_is_light() -> None:
    code = f"import sys, strata; print(sorted(m for m in sys.modules if m in {HEAVY!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_list_commands_skip_pandas_and_migrations(tmp_path: Path) -> None:
    loaded_by(tmp_path, "data", "list")  # the first command creates and migrates the DB
    for args in (("data", "list"), ("runs", "list"), ("experiments", "list")):
        loaded = loaded_by(tmp_path, *args)
        assert "sqlalchemy" in loaded  # it did query the store
        # metadata queries need SQLAlchemy only: no Arrow, DuckDB or numpy (~0.25 s together)
        for heavy in (
            "pandas",
            "alembic",
            "httpx",
            "fastapi",
            "uvicorn",
            "pyarrow",
            "duckdb",
            "numpy",
            "psutil",
            "fsspec",  # the artifact store opens its filesystem on first use
            "pydantic_settings",  # Settings reads its sources itself (~50 ms less)
        ):
            assert heavy not in loaded, (args, heavy)


def test_a_list_command_loads_only_its_layer(tmp_path: Path) -> None:
    """`strata.Client` imports a layer's service when its property builds it: listing
    datasets loads no tracking service, listing runs no data service."""
    modules_of(tmp_path, "data", "list")  # creates and migrates the DB
    data = modules_of(tmp_path, "data", "list")
    assert "strata.data.embedded" in data
    assert not {"strata.tracking.service", "strata.tracking.embedded"} & data
    assert not {"strata.governance.embedded", "strata.features.embedded"} & data
    runs = modules_of(tmp_path, "runs", "list")
    assert "strata.tracking.embedded" in runs
    assert not {"strata.data.service", "strata.data.embedded", "strata.features.embedded"} & runs


def test_the_migration_head_read_from_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from strata.backends.db import MIGRATIONS_DIR, migration_head

    assert migration_head() == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_the_entry_point_freezes_the_heap_before_exit(tmp_path: Path) -> None:
    """`main()` moves what the command allocated out of the garbage collector's reach
    before the interpreter exits (its final collections would walk every imported object:
    ~0.1 s of CPU per command), on success and on error alike."""
    probe = (
        "import gc, sys\n"
        "sys.argv = ['strata', *sys.argv[1:]]\n"
        "from strata.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(gc.get_freeze_count())\n"
    )
    env = {**os.environ, "STRATA_HOME": str(tmp_path)}
    for args in (["--version"], ["data", "show", "no-such-dataset"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert int(done.stdout.strip().splitlines()[-1]) > 10_000, (args, done.stdout, done.stderr)


@pytest.mark.parametrize(
    "args", [("users", "list"), ("data", "list"), ("runs", "list")], ids=" ".join
)
def test_a_remote_command_loads_no_database_or_arrow(args: tuple[str, ...], tmp_path: Path) -> None:
    """Against a server (STRATA_URI), commands speak HTTP: the Client builds no local
    backends, so SQLAlchemy is not imported, nor Arrow for a metadata command. (The server
    here is unreachable: the command fails at its first request, after every import.)"""
    loaded = {m.split(".")[0] for m in modules_of(tmp_path, *args, uri="http://127.0.0.1:9")}
    assert "httpx" in loaded  # it did build the remote client
    assert not loaded & {"sqlalchemy", "alembic", "pyarrow", "duckdb", "numpy", "pandas"}, sorted(
        loaded & {"sqlalchemy", "alembic", "pyarrow", "duckdb", "numpy", "pandas"}
    )
