"""One machine-readable summary line per benchmark, collected by ``run_all.py``.

Each benchmark keeps its own detailed output and ends with ``emit(name, rows)``: one line
``BENCH-SUMMARY {json}`` whose rows are ``{"what", "strata", "peer", "ratio", "target"}``
(strings, already formatted; ``peer`` and ``ratio`` only for peers measured in the same run),
plus ``check`` for correctness checks.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "BENCH-SUMMARY "


def row(
    what: str,
    strata: str,
    peer: str = "",
    ratio: str = "",
    target: str = "",
    check: bool | None = None,
) -> dict[str, Any]:
    """One summary row. ``check`` marks a correctness check (same answers, same rows): it
    fails ``make bench`` in any mode, where a missed speed target fails only ``--full``."""
    return {
        "what": what,
        "strata": strata,
        "peer": peer,
        "ratio": ratio,
        "target": target,
        "check": check,
    }


def emit(benchmark: str, rows: list[dict[str, Any]]) -> None:
    print(MARKER + json.dumps({"benchmark": benchmark, "rows": rows}), flush=True)


def parse(line: str) -> dict[str, Any] | None:
    if not line.startswith(MARKER):
        return None
    return dict(json.loads(line[len(MARKER) :]))
