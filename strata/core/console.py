"""Terminal output shared by every layer's CLI: Rich tables, JSON, errors for people."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``1,000 rows``: a number with its noun in the right form."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (plain, machine-readable: no colour, no wrapping).

    Models by their aliases; NaN and ±inf as the strings "NaN", "Infinity", "-Infinity"
    (the output stays valid JSON, as MLflow's API writes them).
    """
    from pydantic_core import to_json, to_jsonable_python

    data = to_jsonable_python(obj, by_alias=True, fallback=str)
    sys.stdout.write(to_json(data, indent=2, inf_nan_mode="strings").decode() + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    title: str | None = None,
    *,
    empty: str | None = None,
) -> None:
    """A Rich table of ``rows`` showing ``columns`` in that order; with no rows, ``empty``
    (what there is none of, and how to make one), else "No <title> found.".

    In a terminal, long cells fold onto more lines (never cut); piped, the table is as wide as
    its content.
    """
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")  # never cut an id someone has to copy
    count = 0
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
        count += 1
    if count == 0:
        if empty is not None:
            console.print(empty, highlight=False, markup=False)
        else:
            console.print(f"[dim]No {title.lower() if title else 'rows'} found.[/dim]")
        return
    # Piped output has no terminal width to respect: print every row on one line, uncut.
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(100_000)).maximum
    Console(file=console.file, width=max(console.width, natural)).print(table)


def strata_command() -> str:
    """How to type the ``strata`` command in this shell, for hints meant to be copied:
    ``strata`` when that is on PATH and is this installation, else the path of this
    environment's script (``.venv/bin/strata`` when below the working directory)."""
    import os
    import shutil
    from pathlib import Path

    script = Path(sys.executable).parent / "strata"
    found = shutil.which("strata")
    if found and script.exists() and os.path.samefile(found, script):
        return "strata"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def print_error(message: str, hint: str | None = None) -> None:
    err_console.print(f"[bold red]Error:[/bold red] {message}", highlight=False)
    if hint:
        err_console.print(f"[dim]{hint}[/dim]", highlight=False)
