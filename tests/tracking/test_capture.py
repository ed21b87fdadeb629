"""Automatic capture: git state, entry point, Python, installed packages, system metrics."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import strata
from strata.client import Client
from strata.core.config import Settings
from strata.core.errors import InvalidInput
from strata.tracking import capture
from strata.tracking.models import DEFAULT_EXPERIMENT_ID, Metric


def _git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_SYSTEM=os.devnull,
    )
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree with one commit, a branch ``main`` and an ``origin`` with credentials."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", os.devnull)
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('hi')\n")
    _git(root, "add", "train.py")
    _git(root, "commit", "-q", "-m", "first")
    _git(root, "remote", "add", "origin", "https://bob:s3cret@git.example.com/ml/flights.git")
    return root


def test_git_info_of_a_repository(repo: Path) -> None:
    info = capture.git_info(repo)
    assert info == {
        "commit": _git(repo, "rev-parse", "HEAD"),
        "dirty": "false",
        "branch": "main",
        "remote": "https://git.example.com/ml/flights.git",  # credentials stripped
    }
    (repo / "train.py").write_text("print('changed')\n")
    assert capture.git_info(repo / "train.py")["dirty"] == "true"  # a file: its directory
    (repo / "untracked.txt").write_text("x")
    _git(repo, "checkout", "-q", "train.py")
    assert capture.git_info(repo)["dirty"] == "false"  # untracked files do not count


def test_no_repository_or_no_git_gives_no_git_state(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert capture.git_info(plain) == {}
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # no git executable anywhere
    assert capture.git_info(repo) == {}
    tags = capture.source_tags(repo)
    assert capture.TAG_GIT_COMMIT not in tags
    assert tags[capture.TAG_PYTHON_VERSION] == platform.python_version()


def test_strip_credentials() -> None:
    assert capture.strip_credentials("https://u:p@h/x.git") == "https://h/x.git"
    assert capture.strip_credentials("https://tok@h/x.git") == "https://h/x.git"
    assert capture.strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_source_tags_with_a_repository(repo: Path) -> None:
    tags = capture.source_tags(repo)
    assert tags[capture.TAG_GIT_COMMIT] == _git(repo, "rev-parse", "HEAD")
    assert tags[capture.TAG_GIT_DIRTY] == "false"
    assert tags[capture.TAG_GIT_BRANCH] == "main"
    assert tags[capture.TAG_GIT_REPO_URL] == "https://git.example.com/ml/flights.git"
    assert tags[capture.TAG_SOURCE_TYPE] in ("LOCAL", "INTERACTIVE")
    assert tags[capture.TAG_PYTHON_VERSION] == platform.python_version()


def test_requirements_txt_lists_installed_distributions() -> None:
    text = capture.requirements_txt(refresh=True)
    lines = text.splitlines()
    assert lines[0].startswith(f"# python {platform.python_version()}")
    pins = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in (line.split("==", 1) for line in lines[1:])
    }
    assert pins["pydantic"] == importlib.metadata.version("pydantic")
    assert pins["sqlalchemy"] == importlib.metadata.version("sqlalchemy")
    assert pins["typing-extensions"] == importlib.metadata.version("typing_extensions")
    assert "strata-ml" in pins  # an editable install (egg-info) is read from its metadata
    # sorted by normalised name (jaraco.text before jaraco_context would break str.lower)
    assert lines[1:] == sorted(
        lines[1:], key=lambda line: re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
    )
    assert capture.requirements_txt() is text  # cached per process


def test_system_metrics_sampler_logs_points() -> None:
    got: list[Metric] = []
    seen = threading.Event()

    def sink(points: list[Metric]) -> None:
        got.extend(points)
        seen.set()

    sampler = capture.SystemMetricsSampler(sink, interval=0.05).start()
    assert seen.wait(10), "no sample within 10 s"
    sampler.stop()
    keys = {m.key for m in got}
    assert {
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/system_memory_usage_percentage",
        "system/disk_usage_percentage",
    } <= keys
    assert all(m.key.startswith("system/") for m in got)
    assert got[0].step == 0
    assert 0 <= next(m.value for m in got if m.key.endswith("memory_usage_percentage")) <= 100


def test_sampler_takes_a_sample_when_stopped_before_the_first_interval() -> None:
    got: list[Metric] = []
    sampler = capture.SystemMetricsSampler(got.extend, interval=3600).start()
    sampler.stop()
    assert sampler.samples == 1
    assert any(m.key == "system/cpu_utilization_percentage" for m in got)


def test_sampler_rejects_a_bad_interval() -> None:
    with pytest.raises(InvalidInput, match="interval must be > 0"):
        capture.SystemMetricsSampler(lambda _: None, interval=0)


def test_a_run_records_git_and_environment_of_its_script(repo: Path, tmp_path: Path) -> None:
    """A script in a git repository, started from elsewhere: the run carries its commit."""
    (repo / "train.py").write_text(
        textwrap.dedent("""
        import strata
        with strata.start_run(run_name="captured"):
            strata.log_metric("m", 1.0)
    """)
    )
    _git(repo, "commit", "-q", "-am", "train")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_HOME"] = str(home)
    env["PYTHONPATH"] = str(Path(strata.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, str(repo / "train.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with Client("", settings=Settings(home=home)) as client:
        (run,) = client.tracking.search_runs(DEFAULT_EXPERIMENT_ID).items
        tags = run.tags
        assert tags[capture.TAG_GIT_COMMIT] == _git(repo, "rev-parse", "HEAD")
        assert tags[capture.TAG_GIT_DIRTY] == "false"
        assert tags[capture.TAG_GIT_REPO_URL] == "https://git.example.com/ml/flights.git"
        assert tags[capture.TAG_SOURCE_NAME] == str((repo / "train.py").resolve())
        assert tags[capture.TAG_SOURCE_TYPE] == "LOCAL"
        assert tags[capture.TAG_PYTHON_VERSION] == platform.python_version()
        out = client.tracking.download_artifacts(
            run.run_id, capture.REQUIREMENTS_ARTIFACT, tmp_path / "dl"
        )
        assert "pydantic==" in out.read_text()
