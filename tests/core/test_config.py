"""Settings: STRATA_* environment, strata.toml, defaults derived from home, masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.core.config import Settings, config_file_path, load_settings, redact_uri
from strata.core.errors import InvalidInput


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty STRATA_HOME and a working directory without a strata.toml."""
    h = tmp_path / "home"
    monkeypatch.setenv("STRATA_HOME", str(h))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return h


def test_defaults_derive_from_home(home: Path) -> None:
    s = load_settings()
    assert s.home == home.resolve()
    assert s.db_uri == f"sqlite:///{home.resolve() / 'strata.db'}"
    assert s.artifact_uri == str(home.resolve() / "artifacts")
    assert s.online_uri == f"sqlite:///{home.resolve() / 'online.db'}"
    assert s.stream_uri == f"embedded://{home.resolve() / 'streams'}"
    assert s.executor_uri == "local"
    assert (s.host, s.port, s.workers, s.auth) == ("127.0.0.1", 8080, 1, True)
    assert s.token is None and s.admin_token is None
    assert config_file_path() is None


def test_home_defaults_to_dot_strata(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STRATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert load_settings().home == (tmp_path / ".strata").resolve()


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATA_HOME", "~/elsewhere")
    s = load_settings()
    assert s.home == (tmp_path / "elsewhere").resolve()
    assert s.db_uri.endswith("/elsewhere/strata.db")


def test_environment_variables(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_DB_URI", "postgresql+psycopg://u@db.example/strata")
    monkeypatch.setenv("STRATA_ARTIFACT_URI", "s3://bucket/prefix")
    monkeypatch.setenv("STRATA_PORT", "9191")
    monkeypatch.setenv("STRATA_AUTH", "false")
    monkeypatch.setenv("STRATA_TOKEN", "strata_secret")
    monkeypatch.setenv("STRATA_MAX_REQUEST_BYTES", "1234")
    s = load_settings()
    assert s.db_uri == "postgresql+psycopg://u@db.example/strata"
    assert s.artifact_uri == "s3://bucket/prefix"
    assert s.port == 9191
    assert s.auth is False
    assert s.token is not None and s.token.get_secret_value() == "strata_secret"
    assert s.max_request_bytes == 1234
    # URIs not set still derive from home
    assert s.online_uri == f"sqlite:///{home.resolve() / 'online.db'}"


def test_toml_in_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir()
    (home / "strata.toml").write_text('port = 7000\nartifact_uri = "s3://b/p"\nworkers = 3\n')
    assert config_file_path() == home / "strata.toml"
    s = load_settings()
    assert (s.port, s.artifact_uri, s.workers) == (7000, "s3://b/p", 3)
    # the environment beats the file, the file beats defaults
    monkeypatch.setenv("STRATA_PORT", "7001")
    s = load_settings()
    assert (s.port, s.workers) == (7001, 3)
    # explicit keyword arguments beat both
    assert load_settings(port=7002).port == 7002


def test_toml_via_strata_config(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home.mkdir()
    (home / "strata.toml").write_text("port = 7000\n")
    other = tmp_path / "other.toml"
    other.write_text(f'home = "{tmp_path / "h2"}"\nport = 7100\n')
    monkeypatch.setenv("STRATA_CONFIG", str(other))
    assert config_file_path() == other
    s = load_settings()
    assert s.port == 7100  # STRATA_CONFIG wins over $STRATA_HOME/strata.toml
    # STRATA_HOME (env) beats the file's home; the URIs follow the effective home
    assert s.home == home.resolve()
    monkeypatch.delenv("STRATA_HOME")
    s = load_settings()
    assert s.home == (tmp_path / "h2").resolve()
    assert s.db_uri == f"sqlite:///{(tmp_path / 'h2').resolve() / 'strata.db'}"


def test_toml_in_working_directory(home: Path) -> None:
    Path("strata.toml").write_text("workers = 5\n")
    assert config_file_path() == Path.cwd() / "strata.toml"
    assert load_settings().workers == 5


def test_missing_strata_config_is_an_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("STRATA_CONFIG", str(missing))
    with pytest.raises(InvalidInput, match="STRATA_CONFIG") as info:
        load_settings()
    assert str(missing) in info.value.message


def test_malformed_toml_is_invalid_input(home: Path) -> None:
    home.mkdir()
    (home / "strata.toml").write_text("port = = 3\n")
    with pytest.raises(InvalidInput, match="not valid TOML") as info:
        load_settings()
    assert "strata.toml" in info.value.message


def test_bad_value_names_the_setting(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_PORT", "eighty")
    with pytest.raises(InvalidInput) as info:
        load_settings()
    assert "port" in info.value.message
    assert "STRATA_PORT" in info.value.message
    assert info.value.details["fields"] == ["port"]


def test_masked_hides_secrets_and_uri_passwords(home: Path) -> None:
    s = Settings(
        db_uri="postgresql+psycopg://strata:hunter2@db.example:5432/meta",
        online_uri="redis://:r3dispw@cache:6379/0",
        uri="https://bob:p@ss@strata.example",
        token="strata_tok_secret",
        admin_token="strata_admin_secret",
    )
    masked = s.masked()
    text = json.dumps(masked)  # every value is JSON-serialisable
    for secret in ("hunter2", "r3dispw", "p@ss", "ss@strata", "tok_secret", "admin_secret"):
        assert secret not in text
    assert masked["db_uri"] == "postgresql+psycopg://strata:***@db.example:5432/meta"
    assert masked["online_uri"] == "redis://:***@cache:6379/0"
    assert masked["uri"] == "https://bob:***@strata.example"
    assert masked["token"] == "***"
    assert masked["admin_token"] == "***"
    assert masked["home"] == str(home.resolve())
    assert masked["port"] == 8080
    assert set(masked) == set(Settings.model_fields)


def test_masked_keeps_unset_secrets_visible_as_unset(home: Path) -> None:
    masked = Settings().masked()
    assert masked["token"] is None
    assert masked["admin_token"] is None
    assert Settings(token="").masked()["token"] == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("s3://bucket/key", "s3://bucket/key"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "could not connect to postgresql://u:pw@h/db; retry",
            "could not connect to postgresql://u:***@h/db; retry",
        ),
        ("a://x:1@h and b://y:2@k", "a://x:***@h and b://y:***@k"),
        ("http://host:8080/path mail me@example.org", "http://host:8080/path mail me@example.org"),
    ],
)
def test_redact_uri(text: str, expected: str) -> None:
    assert redact_uri(text) == expected
