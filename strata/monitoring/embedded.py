"""The monitoring service in this process: sketches with DuckDB over the data layer's parts
and the prediction log in the artifact store; results and rules in the metadata database."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strata.backends.context import Backends
from strata.core.clock import utcnow
from strata.core.errors import InvalidInput, NotFound, PermissionDenied
from strata.core.principal import Permission
from strata.core.principal import current as current_call
from strata.data.service import DataService
from strata.governance.audit import audited
from strata.monitoring import models as m
from strata.monitoring import predlog
from strata.monitoring.refs import (
    LABELS_PREFIX,
    LOG_PREFIX,
    PROFILE_PREFIX,
    LogRef,
    format_log_ref,
    parse_log_ref,
    profile_name,
)
from strata.monitoring.service import MonitoringService
from strata.registry.service import RegistryService

log = logging.getLogger("strata.monitoring")

if TYPE_CHECKING:
    import duckdb

    from strata.monitoring.actions import Peers
    from strata.monitoring.jobs import ActionJobs
    from strata.monitoring.sketch import Sketch

PROFILES = "monitoring/profiles"
Sketched = tuple[str, int, dict[str, "Sketch"], dict[str, str]]


class EmbeddedMonitoring(MonitoringService):
    def __init__(
        self,
        backends: Backends,
        data: DataService,
        registry: RegistryService,
        peers: Peers | None = None,
    ) -> None:
        self.backends = backends
        self.data = data
        self.registry = registry
        self.peers = peers  # tracking, serving...: what alert actions use (a Client)

    @property
    def db(self) -> Any:
        return self.backends.db

    @property
    def store(self) -> Any:
        return self.backends.artifacts

    # -- sources -------------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        con = duckdb.connect(":memory:")
        fs = self.store.filesystem()
        if fs is not None:
            con.register_filesystem(fs)
        return con

    def resolve_version(self, ref: LogRef) -> str | None:
        """The registry version a log REF's selector names (an alias or a number)."""
        if ref.selector is None:
            return None
        if ref.selector.isdigit():
            return str(int(ref.selector))
        return str(self.registry.get_version_by_alias(ref.model, ref.selector).version)

    def sketch(self, ref: str, columns: list[str] | None = None) -> Sketched:
        """(label, rows, sketches, types) of a REF."""
        from strata.monitoring.scan import sketch_source

        ref = ref.strip()
        if not ref:
            raise InvalidInput("a REF must not be empty", details={"field": "ref"})
        if ref.startswith(PROFILE_PREFIX):
            return self._stored(profile_name(ref), columns)
        con = self._connect()
        try:
            labels = ref.startswith(LABELS_PREFIX)
            if labels or ref.startswith(LOG_PREFIX):
                log = parse_log_ref(LOG_PREFIX + ref[len(LABELS_PREFIX) :] if labels else ref)
                version = self.resolve_version(log)
                label = format_log_ref(log) + ("" if version is None else f" (version {version})")
                if labels:
                    label = "labels:" + label[len(LOG_PREFIX) :]
                if not predlog.has_log(self.store, log.model):
                    return label, 0, {}, {}
                source = predlog.features_source(self.store, log, version)
                if labels:
                    source = self._labels_source(con, log, version)
            else:
                version_ref = self.data.get_version(ref).ref
                self.data.duckdb(version_ref, con=con, view="__drift_source")
                source, label = '"__drift_source"', version_ref
            rows, sketches, types = sketch_source(con, source, columns)
            return label, rows, sketches, types
        finally:
            con.close()

    def _labels_source(
        self, con: duckdb.DuckDBPyConnection, log: LogRef, version: str | None
    ) -> str:
        """The labels of the window's predictions (matched by request id and row) as one
        column ``label``: numbers when every label is one, else text."""
        from strata.monitoring import feedback

        con.register("__labels", feedback.labels_table(self.db, log.model))
        con.execute(
            f"""CREATE TEMP VIEW __label_text AS SELECT json_extract_string(l.label, '$') AS label
                FROM (SELECT * FROM __labels QUALIFY row_number() OVER (
                        PARTITION BY request_id, row ORDER BY id DESC) = 1) l
                JOIN (SELECT request_id, row FROM {predlog.scan(self.store, log.model)}
                      WHERE {predlog.where(log, version)}) p USING (request_id, row)"""
        )
        row = con.execute(
            "SELECT count(label) = count(TRY_CAST(label AS DOUBLE)) FROM __label_text"
        ).fetchone()
        numeric = bool(row and row[0])
        return (
            "(SELECT TRY_CAST(label AS DOUBLE) AS label FROM __label_text)"
            if numeric
            else "__label_text"
        )

    def _stored(self, name: str, columns: list[str] | None) -> Sketched:
        from strata.monitoring.sketch import Sketch

        path = f"{PROFILES}/{name}.json"
        if not self.store.exists(path):
            raise NotFound(
                f"no stored profile {name!r}; save one with save_profile / "
                "`strata monitor profile save`",
                details={"profile": name},
            )
        doc = json.loads(self.store.get_bytes(path))
        sketches = {k: Sketch.from_json(v) for k, v in doc["sketches"].items()}
        if columns:
            sketches = {k: v for k, v in sketches.items() if k in columns}
        return f"profile:{name}", int(doc["rows"]), sketches, dict(doc["types"])

    # -- drift ---------------------------------------------------------------------------
    def drift_with(self, reference: str, current: str, options: m.DriftOptions) -> m.DriftReport:
        from strata.monitoring.drift import compare

        if options.store_as and not current_call().principal.can(Permission.WRITE):
            raise PermissionDenied("storing a drift result (store_as) needs the write permission")
        cols = options.columns
        report = compare(self.sketch(reference, cols), self.sketch(current, cols), options)
        if options.store_as:
            self.record_drift(options.store_as, report, options.window_end or utcnow())
        return report

    def record_drift(self, model: str, report: m.DriftReport, window_end: dt.datetime) -> None:
        """Append the report to the model's drift series."""
        from strata.monitoring.series import record_drift

        m.check_name(model, "store_as")
        record_drift(self.db, model, report, window_end)

    # -- series --------------------------------------------------------------------------
    def list_series(self, model: str) -> list[str]:
        from strata.monitoring import series

        return series.names(self.db, m.check_name(model, "model"))

    def get_series(
        self,
        model: str,
        series: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 10_000,
    ) -> list[m.SeriesPoint]:
        from strata.monitoring import series as s

        if not 1 <= limit <= 100_000:
            raise InvalidInput(f"limit must be 1..100000, got {limit}", details={"field": "limit"})
        return s.read(
            self.db, m.check_name(model, "model"), series, since=since, until=until, limit=limit
        )

    # -- stored references ---------------------------------------------------------------
    def save_profile(
        self, name: str, ref: str, *, columns: list[str] | None = None
    ) -> m.StoredProfile:
        m.check_name(name, "profile")
        if ref.strip().startswith(PROFILE_PREFIX):
            raise InvalidInput(
                "save_profile sketches a dataset version or a log window, not a profile",
                details={"field": "ref"},
            )
        label, rows, sketches, types = self.sketch(ref, columns)
        doc = {
            "name": name,
            "source": label,
            "rows": rows,
            "types": {k: types[k] for k in sketches},
            "sketches": {k: v.to_json() for k, v in sketches.items()},
            "created_at": utcnow().isoformat(),
        }
        with audited(self.db, "monitoring.save_profile", "profile", name, {"source": label}):
            self.store.put_bytes(f"{PROFILES}/{name}.json", json.dumps(doc).encode())
        return m.StoredProfile(
            name=name, source=label, rows=rows, columns=list(sketches), created_at=doc["created_at"]
        )

    def list_profiles(self) -> list[m.StoredProfile]:
        out = []
        for info in predlog.listing(self.store, PROFILES):
            if info.is_dir or not info.path.endswith(".json"):
                continue
            doc = json.loads(self.store.get_bytes(info.path))
            out.append(
                m.StoredProfile(
                    name=doc["name"],
                    source=doc["source"],
                    rows=doc["rows"],
                    columns=list(doc["sketches"]),
                    created_at=doc["created_at"],
                )
            )
        return sorted(out, key=lambda p: p.name)

    # -- prediction log ------------------------------------------------------------------
    def _log_version(self, query: m.LogQuery) -> str | None:
        return self.resolve_version(LogRef(query.model, query.version))

    def query_log_with(self, query: m.LogQuery) -> m.LogRows:
        from strata.monitoring import logs

        version = self._log_version(query)
        con = self._connect()
        try:
            return logs.query(con, self.store, query, version)
        finally:
            con.close()

    def log_stats_with(self, query: m.LogQuery) -> m.LogStats:
        from strata.monitoring import logs

        version = self._log_version(query)
        con = self._connect()
        try:
            return logs.stats(con, self.store, query, version)
        finally:
            con.close()

    def export_log_with(self, query: m.LogQuery, dest: Path, format: m.LogFormat) -> int:
        from strata.monitoring import logs

        version = self._log_version(query)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        con = self._connect()
        try:
            rows = logs.export(con, self.store, query, version, tmp, format)
            tmp.replace(dest)  # appears whole or not at all
            return rows
        finally:
            con.close()
            tmp.unlink(missing_ok=True)

    def get_log_settings(self, model: str) -> m.LogSettings:
        from strata.monitoring import logs

        return logs.get_settings(self.db, m.check_name(model, "model"))

    def set_log_settings(
        self, model: str, *, sample_rate: float | None = None, retention_days: int | None = None
    ) -> m.LogSettings:
        from strata.core.parse import parse_options
        from strata.monitoring import logs

        current = self.get_log_settings(model)
        changes = {
            k: v
            for k, v in (("sample_rate", sample_rate), ("retention_days", retention_days))
            if v is not None
        }
        new = parse_options(
            m.LogSettings, None, **(current.model_dump(exclude={"updated_at"}) | changes)
        )
        saved = logs.set_settings(self.db, model, new)
        # Where the inference servers (a layer below) read it: their poll applies the rate.
        from strata.serving.policies import write_sample_rate

        write_sample_rate(self.store, model, saved.sample_rate)
        return saved

    def apply_retention(self, model: str) -> m.RetentionResult:
        from strata.monitoring import logs

        return logs.apply_retention(
            self.db, self.store, m.check_name(model, "model"), utcnow().date()
        )

    # -- feedback and performance --------------------------------------------------------
    def feedback_with(self, model: str, items: list[m.FeedbackItem]) -> m.FeedbackResult:
        from strata.monitoring import feedback

        m.check_name(model, "model")  # it names the log's partition: no globs, no paths
        con = self._connect()
        try:
            return feedback.submit(self.db, con, self.store, model, items)
        finally:
            con.close()

    def performance_with(self, options: m.PerformanceOptions) -> m.PerformanceReport:
        from strata.monitoring import feedback, performance, series

        if options.store and not current_call().principal.can(Permission.WRITE):
            raise PermissionDenied("storing performance series (store) needs the write permission")
        version = self.resolve_version(LogRef(options.model, options.version))
        labels = feedback.labels_table(self.db, options.model)
        con = self._connect()
        try:
            report = performance.compute(
                con, self.store, labels, options, version, self._class_order(options.model)
            )
        finally:
            con.close()
        if options.store and options.segment is None:
            series.append(self.db, performance.as_points(report), "monitoring.record_performance")
        return report

    def _class_order(self, model: str) -> Any:
        """``version -> classes`` of a registered classifier's probability columns (its
        signature's labels, as the log's text: booleans lower-case), None when unknown."""

        @functools.cache
        def order(version: str) -> list[str] | None:
            if not version.isdigit():
                return None
            try:
                signature = self.registry.get_version(model, int(version)).signature or {}
            except NotFound:
                return None
            labels = signature.get("labels")
            if not labels:
                return None
            return [str(v).lower() if isinstance(v, bool) else str(v) for v in labels]

        return order

    # -- alert rules ---------------------------------------------------------------------
    def _admin(self, what: str) -> None:
        if not current_call().principal.can(Permission.ADMIN):
            raise PermissionDenied(f"{what} needs the admin permission (actions run as the server)")

    def save_rule_with(self, rule: m.AlertRule) -> m.RuleState:
        from strata.monitoring import rules

        self._admin("saving an alert rule")
        return rules.save(self.db, rule)

    def get_rule(self, name: str) -> m.RuleState:
        from strata.monitoring import rules

        return _shown(rules.get(self.db, m.check_name(name, "rule")))

    def list_rules(self, model: str | None = None) -> list[m.RuleState]:
        from strata.monitoring import rules

        found = rules.list_all(self.db, None if model is None else m.check_name(model, "model"))
        return [_shown(r) for r in found]

    def delete_rule(self, name: str) -> None:
        from strata.monitoring import rules

        self._admin("deleting an alert rule")
        rules.delete(self.db, m.check_name(name, "rule"))

    def list_alert_events(self, rule: str | None = None, limit: int = 100) -> list[m.AlertEvent]:
        from strata.monitoring import rules

        if not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be 1..10000, got {limit}", details={"field": "limit"})
        return rules.events(self.db, None if rule is None else m.check_name(rule, "rule"), limit)

    @functools.cached_property
    def jobs(self) -> ActionJobs:
        """The queue running this service's long alert actions (retraining) off the
        evaluating thread; one per service, so per server process."""
        from strata.monitoring.jobs import ActionJobs, settle_orphans

        jobs = ActionJobs(self.db)
        try:  # what a killed process left pending is written down as failed, once
            settle_orphans(self.db)
        except Exception:  # readers are still shown them failed (rules.events)
            log.exception("alert actions left by stopped processes could not be settled")
        return jobs

    def close(self) -> None:
        """Stop the alert-action queue (see :meth:`ActionJobs.close`), if one was started."""
        if "jobs" in self.__dict__:
            self.jobs.close()

    def evaluate_rules(self, wait: bool = False) -> list[m.AlertEvent]:
        from strata.monitoring import actions, rules

        self._admin("evaluating alert rules")
        peers, jobs = self.peers, self.jobs

        def run(rule: m.AlertRule, context: dict[str, Any]) -> list[dict[str, Any]]:
            if peers is None and any(a.type != "webhook" for a in rule.actions):
                raise InvalidInput("this monitoring service has no peers to act through")
            return actions.run(self.db, peers, rule, context, jobs)  # type: ignore[arg-type]

        fired = rules.evaluate(self.db, run, recorded=jobs.release)
        if not wait or not fired:
            return fired
        jobs.wait()
        return rules.get_events(self.db, [e.id for e in fired])

    # -- service health ------------------------------------------------------------------
    def record_health(
        self,
        model: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        window: str = "1m",
        metrics_url: str | None = None,
    ) -> list[m.SeriesPoint]:
        import re

        from strata.monitoring import health, series

        m.check_name(model, "model")
        if not re.fullmatch(r"[1-9][0-9]{0,4}[mhdw]", window):
            raise InvalidInput(
                f"window must be like 1m, 5m, 1h, 1d or 1w, got {window!r}",
                details={"field": "window"},
            )
        if not current_call().principal.can(Permission.WRITE):
            raise PermissionDenied("recording health series needs the write permission")
        con = self._connect()
        try:
            points = health.from_log(con, self.store, model, since, until, window)
        finally:
            con.close()
        if metrics_url is not None:
            points += self._scrape(model, metrics_url)
        series.append(self.db, points, "monitoring.record_health")
        return points

    def _scrape(self, model: str, url: str) -> list[m.SeriesPoint]:
        import httpx

        from strata.monitoring import health
        from strata.monitoring.webhook import check_url

        self._admin("scraping a metrics URL")
        check_url(url)
        try:
            with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as http:
                response = http.get(url)
        except httpx.HTTPError as exc:
            raise InvalidInput(
                f"cannot read metrics from {url}: {type(exc).__name__}",
                details={"field": "metrics_url"},
            ) from None
        if response.status_code != 200:
            raise InvalidInput(
                f"{url} answered HTTP {response.status_code}", details={"field": "metrics_url"}
            )
        return health.from_prometheus(response.text[:20_000_000], model, url, utcnow())


def _shown(state: m.RuleState) -> m.RuleState:
    """A rule as its reader may see it: a webhook URL is a bearer secret (Slack, Teams), so
    only admins (who write rules) see it whole; others see its scheme and host."""
    if current_call().principal.can(Permission.ADMIN):
        return state
    from urllib.parse import urlsplit

    actions = []
    for action in state.rule.actions:
        url = getattr(action, "url", None)
        if isinstance(url, str):
            parts = urlsplit(url)
            host = parts.hostname or "?"
            action = action.model_copy(update={"url": f"{parts.scheme}://{host}/…"})
        actions.append(action)
    return state.model_copy(update={"rule": state.rule.model_copy(update={"actions": actions})})
