"""The lazily converted command tree (strata/cli/lazy.py) is Typer's tree, converted on use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
import typer.testing
from typer import _click
from typer.core import TyperGroup
from typer.testing import CliRunner

from strata.cli.lazy import LazyGroup, lazy_command
from strata.cli.main import app

runner = CliRunner()


def _groups(command: _click.Command, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every group's path: their listings are what previews render. A command's own help
    comes from Typer's conversion of it, the same function either way."""
    if isinstance(command, TyperGroup):
        yield prefix
        for name, child in command.commands.items():
            yield from _groups(child, (*prefix, name))


EAGER = typer.main.get_command(app)
PATHS = [*_groups(EAGER), ("data", "list"), ("runs", "list"), ("train",)]


def _help(path: tuple[str, ...], lazy: bool, monkeypatch: pytest.MonkeyPatch) -> str:
    convert = lazy_command if lazy else typer.main.get_command
    monkeypatch.setattr(typer.testing, "_get_command", convert)
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, (path, result.output)
    return result.output


def test_the_tree_has_every_command() -> None:
    assert len(PATHS) > 15
    assert ("data",) in PATHS and ("models",) in PATHS and ("monitor", "alerts") in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "strata")
def test_help_is_typers(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every group's --help reads as Typer's eager tree renders it."""
    assert _help(path, True, monkeypatch) == _help(path, False, monkeypatch)


def test_a_command_converts_only_its_path() -> None:
    root = lazy_command(app)
    assert isinstance(root, LazyGroup)
    ctx = root.make_context("strata", ["--help"], resilient_parsing=True)
    root.format_help(ctx, ctx.make_formatter())  # a listing converts nothing
    assert root.commands.converted() == []
    data = root.get_command(ctx, "data")
    assert isinstance(data, LazyGroup)
    assert root.commands.converted() == ["data"]
    listing = data.get_command(ctx, "list")
    assert listing is not None and listing.params  # the real command, options read
    assert data.commands.converted() == ["list"]
    assert root.get_command(ctx, "no-such-command") is None
