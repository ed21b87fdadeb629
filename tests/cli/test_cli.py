"""The `strata` CLI: the command spellings other tools rely on, JSON output, help, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from strata.cli.main import app, main
from strata.core.principal import Role

runner = CliRunner()


def run(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json").stdout)


def run_main(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """The real entry point (`main`), in-process: exit status, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["strata", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


# -- help --------------------------------------------------------------------------------------


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group under ``cmd`` (typer vendors click, so duck-typed)."""
    found = [(path, cmd)]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        found.extend(_commands(sub, (*path, name)))
    return found


def test_help_works_and_is_useful_on_every_command() -> None:
    commands = _commands(typer.main.get_command(app))
    paths = {" ".join(p) for p, _ in commands}
    for expected in (
        "server",
        "config show",
        "db upgrade",
        "db current",
        "users create",
        "users list",
        "users disable",
        "tokens create",
        "tokens list",
        "tokens revoke",
        "audit list",
        "audit verify",
    ):
        assert expected in paths
    missing: list[str] = []
    for path, cmd in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        if not (cmd.help or "").strip():
            missing.append(f"`strata {' '.join(path)}` has no help text")
        for param in cmd.params:
            if param.name == "help":
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"`strata {' '.join(path)}`: {param.name} has no help")
    assert not missing, "\n".join(missing)


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage:" in result.output
    assert "users" in result.output and "audit" in result.output


# -- users, tokens, audit -------------------------------------------------------------------


def test_users_commands() -> None:
    out = run("users", "create", "alice", "--role", "editor").stdout
    assert "alice" in out and "editor" in out
    created = run_json("users", "create", "bob")
    assert created["name"] == "bob" and created["role"] == "viewer"

    table = run("users", "list").stdout
    assert "alice" in table and "bob" in table and "editor" in table
    users = run_json("users", "list")
    assert [(u["name"], u["role"], u["disabled"]) for u in users] == [
        ("alice", "editor", False),
        ("bob", "viewer", False),
    ]

    assert "Disabled user alice" in run("users", "disable", "alice").stdout
    assert run_json("users", "list")[0]["disabled"] is True
    assert run_json("users", "enable", "alice")["disabled"] is False
    assert run_json("users", "set-role", "bob", "approver")["role"] == "approver"


def test_tokens_commands() -> None:
    run("users", "create", "carol", "--role", "editor")
    result = run("tokens", "create", "--user", "carol", "--name", "laptop")
    secret = result.stdout.strip()
    assert secret.startswith("strata_") and "\n" not in secret  # only the token on stdout
    assert "shown only now" in result.stderr

    listed = run_json("tokens", "list")
    assert len(listed) == 1
    assert listed[0]["user"] == "carol" and listed[0]["name"] == "laptop"
    for out in (run("tokens", "list").stdout, run("tokens", "list", "--json").stdout):
        assert secret not in out
    token_id = listed[0]["id"]
    assert token_id in run("tokens", "list").stdout  # the full id, to copy into `revoke`
    assert run_json("tokens", "list", "--user", "carol")[0]["id"] == token_id

    with_expiry = run_json("tokens", "create", "--user", "carol", "--expires-in-days", "3")
    assert with_expiry["secret"].startswith("strata_")
    assert with_expiry["info"]["expires_at"] is not None

    assert token_id in run("tokens", "revoke", token_id).stdout
    by_id = {t["id"]: t for t in run_json("tokens", "list")}
    assert by_id[token_id]["revoked_at"] is not None
    assert by_id[with_expiry["info"]["id"]]["revoked_at"] is None

    service = run("tokens", "create", "--user", "carol", "--predict-only")
    assert "service token (it may only predict)" in service.stderr
    scopes = {t["id"]: t["scope"] for t in run_json("tokens", "list")}
    assert sorted(scopes.values(), key=str) == [None, None, "predict"]
    assert "predict" in run("tokens", "list").stdout


def test_audit_commands() -> None:
    run("users", "create", "dan")
    run("tokens", "create", "--user", "dan")
    run("users", "disable", "dan")
    records = run_json("audit", "list")
    assert [r["action"] for r in records] == ["user.create", "token.create", "user.disable"]
    actor = records[0]["actor"]
    assert len(run_json("audit", "list", "--actor", actor)) == 3
    assert run_json("audit", "list", "--actor", "someone-else") == []
    assert [r["action"] for r in run_json("audit", "list", "--action", "user.*")] == [
        "user.create",
        "user.disable",
    ]
    assert len(run_json("audit", "list", "--limit", "1")) == 1
    second_ts = records[1]["ts"]
    since = run_json("audit", "list", "--since", second_ts[:23])  # ISO, naive = UTC
    assert [r["action"] for r in since][-2:] == ["token.create", "user.disable"]
    assert run_json("audit", "list", "--since", "2999-01-01T00:00:00") == []
    table = run("audit", "list").stdout  # piped: nothing cut off, whatever the width
    assert "user.create" in table and "dan" in table and records[1]["resource_id"] in table

    verified = run_json("audit", "verify")
    assert verified == {
        "ok": True,
        "checked": 3,
        "first_broken_seq": None,
        "reason": "",
        "legacy_until": 0,
    }
    assert "3 records verified" in run("audit", "verify").stdout


# -- config and db --------------------------------------------------------------------------


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATA_DB_URI", "postgresql+psycopg://strata:pgSecret9@db:5432/meta")
    monkeypatch.setenv("STRATA_TOKEN", "strata_tokenSecret9")
    monkeypatch.setenv("STRATA_PORT", "9999")
    shown = run_json("config", "show")
    assert shown["db_uri"] == "postgresql+psycopg://strata:***@db:5432/meta"
    assert shown["token"] == "***"
    assert shown["port"] == 9999
    assert shown["config_file"] is None
    table = run("config", "show").stdout
    for out in (table, json.dumps(shown)):
        assert "pgSecret9" not in out and "tokenSecret9" not in out
    assert "9999" in table

    toml = tmp_path / "custom.toml"
    toml.write_text("workers = 4\n")
    monkeypatch.setenv("STRATA_CONFIG", str(toml))
    shown = run_json("config", "show")
    assert shown["workers"] == 4 and shown["config_file"] == str(toml)


def test_config_show_masks_secrets_in_query_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_DB_URI", "postgresql+psycopg://strata@db/meta?password=pgQuery9")
    monkeypatch.setenv("STRATA_STREAM_URI", "kafka://b:9092?sasl_password=saslSecret9&x=1")
    monkeypatch.setenv("STRATA_ARTIFACT_URI", "s3://b/p?aws_secret_access_key=awsSecret9")
    shown = run_json("config", "show")
    assert shown["db_uri"] == "postgresql+psycopg://strata@db/meta?password=***"
    assert shown["stream_uri"] == "kafka://b:9092?sasl_password=***&x=1"
    out = run("config", "show").stdout + json.dumps(shown)
    for secret in ("pgQuery9", "saslSecret9", "awsSecret9"):
        assert secret not in out


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    before = run_json("db", "current")
    assert before["current"] is None and before["up_to_date"] is False
    head = before["head"]
    out = run("db", "upgrade").stdout
    assert head in out and "was empty" in out
    assert run_json("db", "current") == {"current": head, "head": head, "up_to_date": True}
    assert "up to date" in run("db", "current").stdout
    assert f"was {head}" in run("db", "upgrade").stdout  # idempotent


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "code", "sentence"),
    [
        (["users", "create", "bad name"], {}, 2, "Invalid user name 'bad name'"),
        (["users", "create", "eve", "--role", "god"], {}, 2, "Unknown role 'god'"),
        (["users", "disable", "ghost"], {}, 1, "User 'ghost' does not exist"),
        (["tokens", "create", "--user", "ghost"], {}, 1, "User 'ghost' does not exist"),
        (["tokens", "revoke", "nope"], {}, 1, "Token 'nope' does not exist"),
        (["config", "show"], {"STRATA_PORT": "eighty"}, 2, "Invalid setting port"),
        (
            ["users", "list"],
            {"STRATA_DB_URI": "postgresql+psycopg://u:dbPass77@127.0.0.1:1/x"},
            1,
            "is unavailable",
        ),
        (["users", "list"], {"STRATA_URI": "http://127.0.0.1:1"}, 1, "is unreachable"),
        (["users", "list"], {"STRATA_URI": "ftp://host"}, 2, "must be http:// or https://"),
    ],
)
def test_errors_are_sentences_not_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    code: int,
    sentence: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    status, out, err = run_main(args, monkeypatch, capsys)
    assert status == code, (out, err)
    assert "Error:" in err and sentence in " ".join(err.split())
    assert "Traceback" not in out + err
    assert "dbPass77" not in out + err


def test_usage_errors_exit_2_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_main(["users", "create"], monkeypatch, capsys)
    assert status == 2 and "Missing argument" in err and "Traceback" not in err
    status, _, err = run_main(["no-such-command"], monkeypatch, capsys)
    assert status == 2 and "No such command" in err


def test_console_script_entry_point(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "strata"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "strata.cli.main"]
    bad = subprocess.run([*cmd, "users", "disable", "ghost"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "User 'ghost' does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- remote ------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
def test_cli_against_a_server(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_URI", live_server.url)
    monkeypatch.setenv("STRATA_TOKEN", live_server.admin_token)
    run("users", "create", "remote-user", "--role", "editor")
    assert "remote-user" in [u["name"] for u in run_json("users", "list")]
    secret = run("tokens", "create", "--user", "remote-user").stdout.strip()
    assert secret.startswith("strata_")
    records = run_json("audit", "list", "--actor", "admin")
    assert [r["action"] for r in records][-2:] == ["user.create", "token.create"]
    assert all(r["request_id"] for r in records[-2:])
    assert run_json("audit", "verify")["ok"] is True

    monkeypatch.setenv("STRATA_TOKEN", live_server.token_for(Role.VIEWER))
    result = runner.invoke(app, ["users", "list"])
    assert result.exit_code != 0
    assert "permission" in str(result.exception)


def test_help_shows_flags_bare_and_arguments_in_capitals() -> None:
    for path, usage in (
        (["data", "ingest"], "strata data ingest [OPTIONS] SOURCE"),
        (["runs", "compare"], "strata runs compare [OPTIONS] [RUN_IDS]..."),
        (["runs", "history"], "strata runs history [OPTIONS] RUN_ID KEY"),
    ):
        out = runner.invoke(app, [*path, "--help"], terminal_width=100).output
        assert usage in out, out
        (usage_line,) = [line for line in out.splitlines() if "Usage:" in line]
        assert "{" not in usage_line
        flags = [line for line in out.splitlines() if "--json" in line or "--help" in line]
        assert flags and not any("<bool>" in line for line in flags), flags
    lines = runner.invoke(app, ["data", "ingest", "--help"]).output.splitlines()
    assert any("--name" in line and "<str>" in line for line in lines)  # values keep their type
    lines = runner.invoke(app, ["runs", "list", "--help"], terminal_width=100).output.splitlines()
    assert any("--params" in line and "<str>" in line for line in lines)  # repeatable: its element
    assert not any("<list[" in line for line in lines), lines


def test_documented_cli_lines_use_real_options() -> None:
    """Every `--option` in a doc's CLI block exists on the command the line names."""
    root = typer.main.get_command(app)
    docs = Path(__file__).resolve().parents[2] / "docs"
    checked = 0
    for doc in ("data.md", "tracking.md"):
        text = (docs / doc).read_text(encoding="utf-8")
        for line in text.splitlines():
            if not line.startswith("strata "):
                continue
            words = line.split()
            group: Any = root.commands[words[1]]  # type: ignore[attr-defined]
            names = getattr(group, "commands", {})
            command: Any = names.get(words[2], group) if names else group
            for word in words[3:]:
                if word == "|":
                    continue
                if word in names:  # "| tag REF NAME": the next command of the same group
                    command = names[word]
                    continue
                if word.startswith("--"):
                    option = word.split("=")[0].strip("[]|,")
                    opts = {o for p in command.params for o in p.opts + p.secondary_opts}
                    assert option in opts, f"{doc}: {line!r}: no {option} on {command.name}"
                    checked += 1
    assert checked > 10
