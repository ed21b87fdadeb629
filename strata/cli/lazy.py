"""The ``strata`` command tree, each command converted to click when it is first needed.

Typer turns every function of every group into a click command up front: it reads each
signature and evaluates its annotations, ~0.1 s for Strata's ~110 commands, paid by every
run. ``lazy_command(app)`` builds the root group alone; a subgroup or command is converted
when click resolves it (``strata data list`` converts the ``data`` group shell and ``list``,
nothing else). Help listings use a preview of each child (its name, help text, panel and
flags, read from the Typer definitions), so ``strata --help`` converts nothing either. The
output is the same as Typer's eager tree (tests/cli/test_lazy.py compares every group's help).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup
from typer.main import (
    get_command,
    get_command_from_info,
    get_command_name,
    get_group_from_info,
    solve_typer_info_defaults,
)
from typer.models import CommandInfo, TyperInfo


class _Options:
    """The root app's rendering options, passed to every conversion (as Typer does)."""

    def __init__(self, app: typer.Typer) -> None:
        self.pretty_exceptions_short = app.pretty_exceptions_short
        self.rich_markup_mode = app.rich_markup_mode
        self.suggest_commands = app.suggest_commands


class LazyCommands(MutableMapping[str, "_click.Command"]):
    """A group's ``commands``: names in registration order, each converted on first access.

    While ``previewing`` (a help listing), a child not converted yet is answered with its
    preview instead.
    """

    def __init__(self) -> None:
        self._built: dict[str, _click.Command] = {}
        self._pending: dict[str, tuple[Callable[[], _click.Command], _click.Command]] = {}
        self._order: list[str] = []
        self._previewing = False

    def defer(
        self, name: str, build: Callable[[], _click.Command], preview: _click.Command
    ) -> None:
        if name not in self._order:
            self._order.append(name)
        self._built.pop(name, None)
        self._pending[name] = (build, preview)

    @contextmanager
    def previewing(self) -> Iterator[None]:
        before, self._previewing = self._previewing, True
        try:
            yield
        finally:
            self._previewing = before

    def __getitem__(self, name: str) -> _click.Command:
        if name in self._built:
            return self._built[name]
        build, preview = self._pending[name]  # KeyError for an unknown name, as a dict
        if self._previewing:
            return preview
        command = self._built[name] = build()
        del self._pending[name]
        return command

    def __setitem__(self, name: str, command: _click.Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._pending.pop(name, None)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._order.remove(name)
        self._built.pop(name, None)
        self._pending.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def converted(self) -> list[str]:
        """The names converted so far (by use or by ``add_command``), in order."""
        return [name for name in self._order if name in self._built]


class LazyGroup(TyperGroup):
    """A TyperGroup whose children are converted when resolved (see the module docstring)."""

    commands: LazyCommands

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        with self.commands.previewing():
            super().format_help(ctx, formatter)


def lazy_command(app: typer.Typer) -> _click.Command:
    """``app`` as a click command whose subcommands convert on first use (Typer's
    ``get_command`` otherwise). The root keeps its callback, options and completion flags."""
    options = _Options(app)
    shell = copy.copy(app)
    shell.registered_commands, shell.registered_groups = [], []
    root = get_command(shell)  # a group: the app has a callback
    assert isinstance(root, TyperGroup)
    root.__class__ = LazyGroup
    root.commands = _children(app, options)
    return root


def _lazy_group(info: TyperInfo, options: _Options) -> LazyGroup:
    assert info.typer_instance is not None
    shell_info = copy.copy(info)
    shell = copy.copy(info.typer_instance)
    shell.registered_commands, shell.registered_groups = [], []
    shell_info.typer_instance = shell
    group = get_group_from_info(
        shell_info,
        pretty_exceptions_short=options.pretty_exceptions_short,
        rich_markup_mode=options.rich_markup_mode,
        suggest_commands=options.suggest_commands,
    )
    group.__class__ = LazyGroup
    group.commands = _children(info.typer_instance, options)
    assert isinstance(group, LazyGroup)
    return group


def _children(app: typer.Typer, options: _Options) -> LazyCommands:
    """Typer's order: the app's own commands first, then its groups."""
    children = LazyCommands()
    for command_info in app.registered_commands:
        children.defer(*_deferred_command(command_info, options))
    for group_info in app.registered_groups:
        solved = solve_typer_info_defaults(group_info)
        if not solved.name:  # add_typer without a name merges its commands (rare: eager)
            group = get_group_from_info(
                group_info,
                pretty_exceptions_short=options.pretty_exceptions_short,
                rich_markup_mode=options.rich_markup_mode,
                suggest_commands=options.suggest_commands,
            )
            for name, command in group.commands.items():
                children[name] = command
            continue
        preview = TyperGroup(
            name=solved.name,
            help=solved.help,
            short_help=solved.short_help,
            hidden=solved.hidden,
            deprecated=solved.deprecated,
            rich_help_panel=solved.rich_help_panel,
            rich_markup_mode=options.rich_markup_mode,
        )
        children.defer(solved.name, _group_builder(group_info, options), preview)
    return children


def _group_builder(info: TyperInfo, options: _Options) -> Callable[[], _click.Command]:
    return lambda: _lazy_group(info, options)


def _deferred_command(
    info: CommandInfo, options: _Options
) -> tuple[str, Callable[[], _click.Command], _click.Command]:
    assert info.callback is not None
    name = info.name or get_command_name(info.callback.__name__)
    help_text = inspect.getdoc(info.callback) if info.help is None else inspect.cleandoc(info.help)
    preview = TyperCommand(
        name=name,
        help=help_text,
        short_help=info.short_help,
        hidden=info.hidden,
        deprecated=info.deprecated,
        rich_help_panel=info.rich_help_panel,
        rich_markup_mode=options.rich_markup_mode,
    )

    def build() -> _click.Command:
        return get_command_from_info(
            info,
            pretty_exceptions_short=options.pretty_exceptions_short,
            rich_markup_mode=options.rich_markup_mode,
        )

    return name, build, preview
