"""Workers' endpoint reports (``serving/endpoints/<name>/<host_pid>.json``) and the status
the serving service lists from them: live workers added up, gone ones left out and pruned,
an older release's single file still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from strata.backends.artifacts import ArtifactStore
from strata.serving.models import EndpointStatus
from strata.serving.policies import (
    ENDPOINTS,
    REPORT_KEEP,
    REPORT_WINDOW,
    merge_reports,
    publish_status,
    read_status,
    read_statuses,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _report(server: str, at: datetime, **fields: object) -> EndpointStatus:
    base: dict[str, object] = {"name": "flights", "model": "flights@production", "ready": True}
    return EndpointStatus.model_validate({**base, "server": server, "updated_at": at, **fields})


def test_live_workers_are_added_up_and_the_newest_speaks_for_the_endpoint() -> None:
    merged = merge_reports(
        [
            _report("b:2", NOW, version="4", stats={"requests": 5, "canary": 2}),
            _report("a:1", NOW - timedelta(seconds=20), version="3", stats={"requests": 7}),
            _report("c:3", NOW - REPORT_WINDOW - timedelta(seconds=1), stats={"requests": 900}),
        ]
    )
    assert merged.stats == {"requests": 12, "canary": 2}  # c:3 is not live
    assert (merged.workers, merged.version, merged.server) == (2, "4", "b:2")


def test_one_worker_not_ready_makes_the_endpoint_not_ready_with_its_error() -> None:
    merged = merge_reports(
        [
            _report("a:1", NOW),
            _report("b:2", NOW, ready=False, error="model file missing"),
        ]
    )
    assert not merged.ready and merged.error == "model file missing"


def test_a_stopped_server_keeps_its_last_report(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    publish_status(store, _report("a:1", NOW - timedelta(days=1), stats={"requests": 3}))
    publish_status(store, _report("b:2", NOW - timedelta(days=1), stats={"requests": 4}))
    status = read_status(store, "flights")
    assert status is not None and status.stats == {"requests": 7} and status.workers == 2


def test_reports_of_workers_gone_for_a_week_are_pruned_by_a_new_worker(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    old = datetime.now(UTC) - REPORT_KEEP - timedelta(hours=1)
    publish_status(store, _report("old:1", old))
    publish_status(store, _report("recent:2", datetime.now(UTC) - timedelta(days=1)))
    publish_status(store, _report("new:3", datetime.now(UTC)))  # not its first report
    assert len(store.list(f"{ENDPOINTS}/flights")) == 3
    publish_status(store, _report("new:3", datetime.now(UTC)), first=True)
    names = sorted(i.path.rsplit("/", 1)[-1] for i in store.list(f"{ENDPOINTS}/flights"))
    assert names == ["new_3.json", "recent_2.json"]


def test_a_report_of_an_older_release_is_read_and_listed(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    legacy = _report("a:1", NOW, stats={"requests": 2}).model_copy(update={"name": "legacy"})
    store.put_bytes(f"{ENDPOINTS}/legacy.json", legacy.model_dump_json().encode())
    publish_status(store, _report("b:2", NOW, stats={"requests": 1}))
    listed = read_statuses(store)
    assert [(s.name, s.stats["requests"]) for s in listed] == [("flights", 1), ("legacy", 2)]


def test_a_server_name_cannot_leave_the_endpoint_folder(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    publish_status(store, _report("../../../escape:1", NOW))
    names = [i.path for i in store.list(f"{ENDPOINTS}/flights")]
    assert names == [f"{ENDPOINTS}/flights/.._.._.._escape_1.json"]
    assert not (tmp_path / "escape_1.json").exists()


def test_what_is_not_a_report_is_left_out_of_the_listing(tmp_path: Path) -> None:
    """A folder whose name is no endpoint's, a file that is no report: listed past, the
    endpoints' reports still listed."""
    store = ArtifactStore(str(tmp_path))
    publish_status(store, _report("a:1", NOW, stats={"requests": 1}))
    store.put_bytes(f"{ENDPOINTS}/_x/r/artifacts/f.json", b"{}")
    store.put_bytes(f"{ENDPOINTS}/flights/garbage.json", b"not json")
    store.put_bytes(f"{ENDPOINTS}/flights/other.json", b'{"name": 5}')
    listed = read_statuses(store)
    assert [(s.name, s.stats) for s in listed] == [("flights", {"requests": 1})]


def test_workers_reporting_seldom_stay_live_for_three_of_their_intervals() -> None:
    slow = {"report_seconds": 600.0}
    merged = merge_reports(
        [
            _report("a:1", NOW, stats={"requests": 1}, **slow),
            _report("b:2", NOW - timedelta(minutes=25), stats={"requests": 2}, **slow),
            _report("c:3", NOW - timedelta(minutes=31), stats={"requests": 4}, **slow),
        ]
    )
    assert merged.stats == {"requests": 3} and merged.workers == 2


def test_a_report_with_fields_this_release_does_not_know_is_read() -> None:
    """A newer worker's report, read by this release during a rolling upgrade: its new
    fields are ignored, the rest is read (configs, unlike reports, refuse unknown fields)."""
    doc = _report("a:1", NOW, stats={"requests": 3}).model_dump(mode="json")
    read = EndpointStatus.model_validate({**doc, "gpu_seconds": 1.5, "shards": [1, 2]})
    assert read.stats == {"requests": 3} and read.server == "a:1"
    assert not hasattr(read, "gpu_seconds")


def test_a_report_whose_policy_this_release_cannot_read_is_listed_without_it(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(str(tmp_path))
    doc = _report("new:1", NOW, stats={"requests": 4}).model_dump(mode="json")
    doc["policy"] = {**doc["policy"], "mirror_to_queue": "kafka://x"}  # a newer policy field
    store.put_bytes(f"{ENDPOINTS}/flights/new_1.json", json.dumps(doc).encode())
    (listed,) = read_statuses(store)
    assert listed.name == "flights" and listed.stats == {"requests": 4}
    assert "newer release" in listed.policy_errors["policy"]
