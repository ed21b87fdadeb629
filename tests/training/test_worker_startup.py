"""What a spawned tuning worker pays at start: skops without torch."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
from strata.models.flavors.sklearn import import_skops
sio = import_skops()
from skops.io._trusted_types import SKLEARN_ESTIMATOR_TYPE_NAMES as names
shim = "sklearn.externals.array_api_compat.torch"
out = {"torch": "torch" in sys.modules, "names": sorted(names), "stub_left": shim in sys.modules}
print(json.dumps(out))
"""
PLAIN = """
import json, skops.io
from skops.io._trusted_types import SKLEARN_ESTIMATOR_TYPE_NAMES as names
print(json.dumps(sorted(names)))
"""


def _run(code: str) -> object:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_skops_imports_without_torch_and_trusts_the_same_types() -> None:
    fast = _run(CHECK)
    assert isinstance(fast, dict)
    assert fast["torch"] is False  # the seconds every spawned worker paid
    assert fast["stub_left"] is False  # a later real use of the shim imports it normally
    assert fast["names"] == _run(PLAIN) and len(fast["names"]) > 100
