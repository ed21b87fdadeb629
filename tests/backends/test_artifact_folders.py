"""Every folder a layer writes at the artifact root is one an experiment location may not
take (``STRATA_FOLDERS``; tracking refuses such locations, tests/contract)."""

from __future__ import annotations

from strata.backends.artifacts import DIGEST_PREFIX, STRATA_FOLDERS
from strata.data.storage import store_path
from strata.governance.audit import CHECKPOINT_PREFIX
from strata.monitoring.embedded import PROFILES
from strata.serving import jobs, policies, predlog


def test_each_layers_own_folder_is_reserved() -> None:
    written = {
        DIGEST_PREFIX,
        store_path("flights", "v1", 0),
        CHECKPOINT_PREFIX,
        PROFILES,
        jobs.PREFIX,
        policies.PREFIX,
        policies.ENDPOINTS,
        policies.SAMPLING,
        predlog.PREFIX,
    }
    assert {path.split("/", 1)[0] for path in written} == STRATA_FOLDERS
