"""The embedded service's quality records: validation reports and profiles, computed with
DuckDB over a version's verified parts and stored with the version (one audited write each).

Split out of :mod:`strata.data.embedded` to keep it short; Arrow and DuckDB are imported where
used, so metadata-only commands do not load them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from strata.backends.db import Database
from strata.core.clock import utcnow
from strata.core.ids import new_id
from strata.data import catalog
from strata.data.models import DatasetVersion, StoredReport
from strata.data.records import jsonable
from strata.data.tables import ProfileRow, ReportRow
from strata.governance.audit import audited

if TYPE_CHECKING:
    from strata.data.profiles.model import DatasetProfile
    from strata.data.storage import VersionFiles
    from strata.data.validation import Suite, ValidationReport


def validate(
    db: Database,
    vfiles: VersionFiles,
    version: DatasetVersion,
    locations: list[str],
    suite: Suite,
    sample_size: int,
) -> ValidationReport:
    """Run ``suite`` over the version's parts (``locations``, verified) and store the report."""
    from strata.data.sandbox import sandbox
    from strata.data.sqltext import create_view
    from strata.data.validation import validate as run

    con = vfiles.connect()
    try:
        create_view(con, version.dataset, locations)
        sandbox(con, locations)  # suites may carry custom SQL
        report = run(con, version.dataset, suite, sample_size=sample_size)
    finally:
        con.close()
    with audited(db, "data.validate", "dataset_version", version.ref) as scope:
        ds = catalog.dataset_row(scope.session, version.dataset)
        scope.session.add(
            ReportRow(
                id=new_id(),
                dataset_id=ds.id,
                version_id=version.id,
                suite=suite.name,
                success=report.success,
                gate=None,
                created_at=utcnow(),
                report=json.dumps(report.model_dump(mode="json")),
            )
        )
        scope.details["success"] = report.success
    return report


def list_reports(db: Database, ref: str) -> list[StoredReport]:
    """The reports stored for the version, newest first."""
    with db.read() as s:
        ds, row = catalog.resolve(s, ref)
        reports = s.scalars(
            sa.select(ReportRow)
            .where(ReportRow.dataset_id == ds.id, ReportRow.version_id == row.id)
            .order_by(ReportRow.created_at.desc(), ReportRow.id.desc())
        ).all()
        return [
            StoredReport(
                id=r.id,
                dataset=ds.name,
                version=r.version_id,
                suite=r.suite,
                success=r.success,
                gate=r.gate,
                created_at=r.created_at,
                report=json.loads(r.report),
            )
            for r in reports
        ]


def profile(
    db: Database,
    vfiles: VersionFiles,
    version: DatasetVersion,
    locations: Callable[[], list[str]],
) -> DatasetProfile:
    """The stored profile of the version, else computed over ``locations()`` and stored."""
    from strata.data.profiling import DatasetProfile

    with db.read() as s:
        ds = catalog.dataset_row(s, version.dataset)
        stored = s.get(ProfileRow, (ds.id, version.id))
        if stored is not None:
            return DatasetProfile.model_validate(json.loads(stored.profile))
    from strata.data.sqltext import create_view
    from strata.data.staging import profile_relation

    con = vfiles.connect()
    try:
        create_view(con, "version", locations())
        result = profile_relation(con, "version")
    finally:
        con.close()
    with audited(db, "data.profile", "dataset_version", version.ref) as scope:
        ds = catalog.dataset_row(scope.session, version.dataset)
        if scope.session.get(ProfileRow, (ds.id, version.id)) is None:
            scope.session.add(
                ProfileRow(
                    dataset_id=ds.id,
                    version_id=version.id,
                    created_at=utcnow(),
                    profile=json.dumps(jsonable(result)),
                )
            )
    return result
