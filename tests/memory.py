"""Peak memory of a process *during* an operation, sampled by a thread.

Comparing RSS before and after proves nothing: a server that buffered a whole file and freed
it ends where it began, and ``ru_maxrss`` is a high-water mark an earlier test may already
have raised. ``PeakRSS`` samples the process's RSS every few milliseconds while the block runs
and reports the highest value seen above the RSS at entry.
"""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

MiB = 2**20


class PeakRSS:
    """``with PeakRSS() as peak: ...`` then ``peak.growth`` (bytes) and ``peak.samples``."""

    def __init__(self, pid: int | None = None, interval: float = 0.002) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.base = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def growth(self) -> int:
        return self.peak - self.base

    def check(self, limit: int, what: str, min_samples: int = 20) -> None:
        """Assert the peak stayed under ``limit`` bytes above the start, with enough samples
        taken during the operation for the peak to mean something."""
        assert self.samples >= min_samples, f"{what}: only {self.samples} RSS samples taken"
        assert self.growth < limit, f"{what}: RSS peaked {self.growth / MiB:.0f} MiB above start"
