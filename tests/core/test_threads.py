"""A Strata thread's name as the operating system shows it (``core/threads.py``), read back
from Linux's ``/proc`` (the platform Strata's servers and CI run on)."""

from __future__ import annotations

import threading
from pathlib import Path

from strata.core.threads import OS_NAME_BYTES, name_os_thread, os_name


def test_a_long_strata_name_drops_its_prefix_and_fits_the_kernels_limit() -> None:
    assert os_name("strata-predlog") == b"strata-predlog"
    assert os_name("strata-predict_0") == b"predict_0"
    assert os_name("strata-alert-action_12345") == b"alert-action_12"
    assert len(os_name("x" * 40)) == OS_NAME_BYTES
    assert os_name("naïve") == b"na?ve"


def _comm_of_thread(name: str) -> tuple[bool, str]:
    seen: dict[str, object] = {}

    def run() -> None:
        seen["took"] = name_os_thread()
        seen["comm"] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    return bool(seen["took"]), str(seen["comm"]).strip()


def test_the_calling_thread_is_named_in_proc() -> None:
    assert _comm_of_thread("strata-predlog") == (True, "strata-predlog")
    assert _comm_of_thread("strata-predict_1") == (True, "predict_1")


def test_the_prediction_log_writer_names_its_thread(tmp_path: Path) -> None:
    from strata.serving.predlog import PredictionLog

    class Store:
        def put_bytes(self, path: str, data: bytes) -> None:
            (tmp_path / path.replace("/", "_")).write_bytes(data)

    log = PredictionLog(Store()).start()
    try:
        thread = log._thread
        assert thread is not None and thread.native_id is not None
        comm = Path(f"/proc/self/task/{thread.native_id}/comm")
        for _ in range(200):
            if comm.read_text().strip() == "strata-predlog":
                break
            threading.Event().wait(0.01)
        assert comm.read_text().strip() == "strata-predlog"
    finally:
        log.close()
