"""The fault-injection hook: its spec is validated, and it is off unless armed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strata.core import faults
from strata.core.errors import InvalidInput


def test_spec_entries_are_parsed_and_bad_ones_named() -> None:
    assert faults._parse("a.b, c@3:fail ,d@2") == {
        "a.b": (1, "kill"),
        "c": (3, "fail"),
        "d": (2, "kill"),
    }
    for bad in ("x:explode", "x@0", "x@two"):
        with pytest.raises(InvalidInput, match=f"bad entry {bad!r}"):
            faults._parse(bad)


def test_points_do_nothing_unless_armed_and_fail_from_the_nth_arrival() -> None:
    code = (
        "from strata.core import faults\n"
        "faults.point('p')\n"  # not armed: nothing
        "faults.point('q')\n"  # 1st arrival of q: below @2
        "try:\n    faults.point('q')\n"
        "except Exception as exc:\n    print(type(exc).__name__, flush=True)\n"
        "faults.point('k')\n"
        "print('not reached')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"STRATA_FAULT": "q@2:fail,k", "PATH": ""},
        timeout=60,
    )
    assert out.returncode == -9 and out.stdout == "Unavailable\n", out.stderr
    off = subprocess.run(
        [sys.executable, "-c", "from strata.core import faults\nfaults.point('k')\nprint('ok')"],
        capture_output=True,
        text=True,
        env={"PATH": ""},
        timeout=60,
    )
    assert off.returncode == 0 and off.stdout == "ok\n"
