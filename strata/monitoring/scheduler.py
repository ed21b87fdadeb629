"""The server's alert scheduler: a daemon thread evaluating every rule each
``STRATA_ALERT_INTERVAL`` seconds (default 60; 0 turns it off), as the principal
``strata-alerts`` (admin). Several workers may each run one: a rule fires once per newest
point whatever the number of evaluators (see :mod:`strata.monitoring.rules`)."""

from __future__ import annotations

import logging
import os
import threading

from strata.core.principal import Principal, Role, bind
from strata.monitoring.service import MonitoringService

log = logging.getLogger("strata.monitoring")
INTERVAL_ENV = "STRATA_ALERT_INTERVAL"
PRINCIPAL = Principal(name="strata-alerts", role=Role.ADMIN)


class AlertScheduler:
    def __init__(self, service: MonitoringService, interval_s: float) -> None:
        self.service = service
        self.interval_s = interval_s
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="strata-alerts", daemon=True)

    def start(self) -> AlertScheduler:
        self._thread.start()
        return self

    def _run(self) -> None:
        bind(PRINCIPAL)  # this thread's own context: audited as strata-alerts
        while not self._stop.wait(self.interval_s):
            try:
                self.service.evaluate_rules()
            except Exception:  # the next pass tries again
                log.exception("alert evaluation pass failed")
            self.passes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def from_env(service: MonitoringService) -> AlertScheduler | None:
    """A started scheduler at the configured interval, or None when turned off."""
    raw = os.environ.get(INTERVAL_ENV, "60")
    try:
        interval = float(raw)
    except ValueError:
        log.error("%s=%r is not a number of seconds; alert scheduler off", INTERVAL_ENV, raw)
        return None
    if interval <= 0:
        return None
    return AlertScheduler(service, interval).start()
