"""What the data commands share: option types, the data service of ``strata.Client()``,
spinners, sizes and the validation report table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strata.core.console import err_console, print_table

if TYPE_CHECKING:  # imported when a command runs, so `strata --help` starts fast
    from rich.status import Status

    from strata.data.service import DataService

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
MaxResultsOpt = Annotated[int, typer.Option("--max-results", help="At most this many.")]
PageTokenOpt = Annotated[
    str | None, typer.Option("--page-token", help="Where the next page starts (printed).")
]


def working(message: str) -> Status:
    """A spinner on stderr while a long computation runs (stdout stays clean for --json)."""
    return err_console.status(message, spinner="dots")


@contextmanager
def data_service() -> Iterator[DataService]:
    """The data service of ``strata.Client()``: remote when ``STRATA_URI`` is set."""
    from strata.client import Client

    with Client() as client:
        yield client.data


def size_text(n: float) -> str:
    """Bytes in binary units (1 MiB = 1,048,576 bytes), as the numbers are computed."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def report_table(report: dict[str, Any]) -> None:
    rows = []
    for res in report.get("results", []):
        observed = res.get("observed_value")
        rows.append(
            {
                "expectation": res.get("expectation_type"),
                "column": res.get("kwargs", {}).get("column", ""),
                "success": "yes" if res.get("success") else "NO",
                "observed": observed if not isinstance(observed, float) else f"{observed:.4g}",
                "unexpected": res.get("unexpected_count"),
                "unexpected %": res.get("unexpected_percent"),
                "error": res.get("error") or "",
            }
        )
    print_table(
        rows,
        ["expectation", "column", "success", "observed", "unexpected", "unexpected %", "error"],
        title=f"Suite {report.get('suite_name')}",
    )
