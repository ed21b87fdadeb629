"""The data REST API (``/api/v1/data``): datasets, versions, ingestion, quality, lineage.

Routes parse, call the data service and render; the rules live in the service. A version
reference in a path (``{ref}``) is ``NAME``, ``NAME@latest``, ``NAME@<id or prefix>`` or
``NAME@<tag>`` (URL-encode the ``@`` or not; both work).

Ingestion comes three ways: ``POST /datasets/{name}/ingest`` has the server read a URL it can
reach (``s3://``, ``https://``...) or run a SQL query; ``PUT /upload/{name}`` streams a file of
any size in the body (exempt from the JSON size limit); ``POST /datasets/{name}/rows`` pushes
rows as a JSON array or NDJSON (``application/x-ndjson``), appended to the latest version by
default. The server never reads its own local files on a client's behalf.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from strata.core.config import redact_uri
from strata.core.errors import InvalidInput
from strata.core.parse import parse_options
from strata.core.staging import make_workdir
from strata.data import fetch
from strata.data.models import (
    CLAIMED,
    ColumnAnnotation,
    DatasetQuery,
    IngestOptions,
    TransformOptions,
)
from strata.data.service import DataService
from strata.governance.routing import (
    READ,
    WRITE,
    file_response,
    json_response,
    run_blocking,
    service,
)

router = APIRouter(prefix="/api/v1/data", tags=["data"])
UPLOAD_PREFIX = "/api/v1/data/upload/"
#: Routes that take data in: a 4xx they answer before the service runs (a refused source,
#: a malformed body) is audited by the app (``strata.server.app``) under this action.
AUDITED_REFUSALS = {
    ("POST", "/api/v1/data/datasets/{name}/ingest"): "data.ingest",
    ("PUT", "/api/v1/data/upload/{name}"): "data.ingest",
    ("POST", "/api/v1/data/datasets/{name}/rows"): "data.ingest",
    ("POST", "/api/v1/data/transforms"): "data.transform",
}


def _svc(request: Request) -> DataService:
    svc: DataService = service(request, "data", DataService)
    return svc


# -- bodies -------------------------------------------------------------------------------------
class CreateDataset(BaseModel):
    name: str
    project: str = "default"
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    owner: str | None = None


class UpdateDataset(BaseModel):
    project: str | None = None
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] | None = None


class RestIngestOptions(IngestOptions):
    """:class:`IngestOptions` as the REST API takes them: unknown names are ignored, as they
    always were over HTTP (a newer client's option reaches an older server harmlessly)."""

    model_config = ConfigDict(extra="ignore")


def rest_suite(suite: Any) -> Any:
    """A suite as the REST API takes it: an object, or YAML text — never a path. A string is
    always parsed as YAML, so ``"~/secrets.yaml"`` is a (bad) one-line suite, not a file the
    server opens for the caller."""
    if isinstance(suite, str):
        from strata.data.expectations.suite import parse_suite_text

        return parse_suite_text(suite, source="(request body)")
    return suite


def rest_options(opts: IngestOptions) -> IngestOptions:
    return opts.model_copy(update={"suite": rest_suite(opts.suite)})


class IngestRequest(RestIngestOptions):
    """``POST /datasets/{name}/ingest``: a URL or (with ``sql_url``) a query, plus the options."""

    source: str


class TagBody(BaseModel):
    tag: str


class AnnotateBody(BaseModel):
    annotations: dict[str, ColumnAnnotation]


class ValidateBody(BaseModel):
    suite: dict[str, Any] | str
    sample_size: int = 20


class TransformBody(TransformOptions):
    """:class:`TransformOptions` of a SQL transform as the REST API takes them (Python
    transforms run in the client and upload); unknown names are ignored, as over HTTP."""

    model_config = ConfigDict(extra="ignore")

    sql: str


# -- datasets -----------------------------------------------------------------------------------
@router.get("/datasets", dependencies=READ)
def list_datasets(
    request: Request,
    q: str | None = None,
    project: str | None = None,
    tag: str | None = None,
    column: str | None = None,
    pii: bool | None = None,
    include_quarantine: bool = False,
    max_results: int = 1000,
    page_token: str | None = None,
) -> Response:
    """The catalog by name, a page at a time: datasets filtered by name/description text,
    project, tag, column, PII; ``next_page_token`` (when more match) is the ``page_token``
    of the next page."""
    options = parse_options(
        DatasetQuery,
        query=q,
        project=project,
        tag=tag,
        column=column,
        pii=pii,
        include_quarantine=include_quarantine,
        max_results=max_results,
        page_token=page_token,
    )
    page = _svc(request).list_datasets_with(options)
    return json_response({"datasets": page.items, "next_page_token": page.next_page_token})


@router.post("/datasets", dependencies=WRITE, status_code=201)
def create_dataset(body: CreateDataset, request: Request) -> Response:
    ds = _svc(request).create_dataset(
        body.name,
        project=body.project,
        description=body.description,
        tags=body.tags,
        owner=body.owner,
    )
    return json_response(ds, 201)


@router.get("/datasets/{name}", dependencies=READ)
def get_dataset(name: str, request: Request) -> Response:
    return json_response(_svc(request).get_dataset(name))


@router.patch("/datasets/{name}", dependencies=WRITE)
def update_dataset(name: str, body: UpdateDataset, request: Request) -> Response:
    return json_response(
        _svc(request).update_dataset(
            name,
            project=body.project,
            description=body.description,
            owner=body.owner,
            tags=body.tags,
        )
    )


@router.get("/datasets/{name}/versions", dependencies=READ)
def list_versions(
    name: str,
    request: Request,
    max_results: int = 1000,
    page_token: str | None = None,
    newest_first: bool = False,
) -> Response:
    """The dataset's versions a page at a time, oldest first (or ``newest_first``);
    ``next_page_token`` (when more remain) is the ``page_token`` of the next page."""
    page = _svc(request).list_versions(
        name, max_results=max_results, page_token=page_token, newest_first=newest_first
    )
    return json_response({"versions": page.items, "next_page_token": page.next_page_token})


@router.get("/datasets/{name}/stream-position", dependencies=READ)
def stream_position(name: str, request: Request, stream: str = Query(...)) -> Response:
    """The stream offsets committed with the dataset's versions (``null`` when none)."""
    return json_response({"position": _svc(request).stream_position(name, stream)})


# -- ingestion ----------------------------------------------------------------------------------
#: URL schemes the server fetches on a caller's behalf. Everything else (local paths, file://,
#: fsspec's local:// or memory://, chained "a::b" URLs) would let a caller read the server's
#: own files.
SERVER_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "http", "https"})


def check_server_source(source: str, name: str) -> str:
    """The source's scheme, if the server may read it: s3/gs URLs (no fsspec chaining with
    ``::``) and http(s) URLs, which :func:`strata.data.fetch.download` fetches with every
    address and redirect checked."""
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    chained = "::" in source and scheme not in ("http", "https")  # IPv6 literals are fine
    if scheme not in SERVER_SCHEMES or chained:
        raise InvalidInput(
            f"The server does not read its own files or {scheme or 'local'} URLs "
            f"({redact_uri(source)!r}): upload the file with PUT {UPLOAD_PREFIX}{name}, or "
            f"give an {', '.join(sorted(SERVER_SCHEMES))} URL or a SQL query",
            details={"field": "source"},
        )
    if scheme in ("http", "https"):
        fetch.check_url(source)
    return scheme


def server_provenance(opts: IngestOptions, info: dict[str, Any]) -> IngestOptions:
    """The server sets provenance: ``info`` (what it observed) is the source; the caller's
    ``parents``, ``transform`` and ``source_info`` are kept apart as *claimed* — stored with
    the version (``DatasetVersion.claimed``) and shown as claimed, never lineage edges."""
    claims: dict[str, Any] = {}
    if opts.parents:
        claims["parents"] = opts.parents
    if opts.transform is not None:
        claims["transform"] = opts.transform
    if opts.source_info:
        claims["source_info"] = opts.source_info
    source_info = dict(info) | ({CLAIMED: claims} if claims else {})
    return opts.model_copy(
        update={"parents": [], "transform": None, "source_info": source_info or None}
    )


def refuse_sql_url() -> None:
    """Over REST a database URL is never accepted: it would let any editor run SQL on
    databases the server can reach (its own PostgreSQL as superuser, a Unix socket...)."""
    raise InvalidInput(
        "The server does not take database URLs: SQL ingestion names a connection an admin "
        "registered (connection=NAME; `strata connections add NAME URL`). Embedded use "
        "(no server) still takes sql_url=",
        details={"field": "sql_url"},
    )


@router.post("/datasets/{name}/ingest", dependencies=WRITE, status_code=201)
async def ingest(name: str, body: IngestRequest, request: Request) -> Response:
    """Ingest from a URL the server can reach or a SQL query (``sql_url``); 201 with the result.

    Local paths are refused: upload local files with ``PUT /api/v1/data/upload/{name}``."""
    svc = _svc(request)
    opts = rest_options(IngestOptions.model_validate(body.model_dump(exclude={"source"})))
    if opts.sql_url is not None:
        refuse_sql_url()
    elif opts.connection is not None:
        pass  # a query on a registered connection (resolved by the service)
    elif check_server_source(body.source, name) in ("http", "https"):
        allowed = fetch.parse_networks(request.app.state.settings.source_allow_networks)
        workdir = _spool_dir(request)
        try:
            path = await run_blocking(fetch.download, body.source, workdir, allowed)
            shown = redact_uri(body.source)
            opts = server_provenance(opts, {"kind": "url", "uri": shown})
            result = await run_blocking(svc.ingest_with, path, name, opts, label=shown)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return json_response(result, 201)
    opts = server_provenance(opts, {})
    result = await run_blocking(svc.ingest_with, body.source, name, opts)
    return json_response(result, 201)


def _json_object(text: str | None, field: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{field} is not valid JSON: {exc}", details={"field": field}) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object", details={"field": field})
    return value


def _spool_dir(request: Request) -> str:
    """A private directory for one upload or fetch under ``$STRATA_HOME/tmp``, owned by this
    process like the data service's work directories (swept if the server dies)."""
    return make_workdir(request.app.state.client.settings.home / "tmp", "ingest-")


async def _spool(request: Request, path: str) -> int:
    size = 0
    with open(path, "wb") as out:
        try:
            async for chunk in request.stream():
                if chunk:
                    size += len(chunk)
                    await run_blocking(out.write, chunk)
        except ClientDisconnect:
            raise InvalidInput(
                "The upload was interrupted: the client disconnected; nothing was stored"
            ) from None
    return size


@router.put(
    "/upload/{name}",
    dependencies=WRITE,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    name: str,
    request: Request,
    filename: str = Query(
        "upload",
        description="The file's name (its extension sets the format unless options.format does).",
    ),
    options: str = Query("{}", description="IngestOptions as JSON."),
) -> Response:
    """Stream a CSV/Parquet/JSONL file of any size in the body and ingest it."""
    raw = _json_object(options or "{}", "options")
    opts = rest_options(parse_options(RestIngestOptions, **(raw or {})))
    if opts.sql_url is not None or opts.connection is not None:
        raise InvalidInput(
            "An upload ingests the file in the body; sql_url belongs to "
            "POST /api/v1/data/datasets/{name}/ingest",
            details={"field": "options.sql_url"},
        )
    svc = _svc(request)
    workdir = _spool_dir(request)
    base = os.path.basename(filename.replace("\\", "/")).lstrip(".") or "upload"
    path = os.path.join(workdir, base)
    try:
        if await _spool(request, path) == 0:
            raise InvalidInput(
                f"The uploaded file {base!r} is empty: nothing to ingest", details={"source": base}
            )
        opts = server_provenance(opts, {"kind": "upload", "uri": base})
        result = await run_blocking(svc.ingest_with, path, name, opts, label=base)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return json_response(result, 201)


@router.post("/datasets/{name}/rows", dependencies=WRITE, status_code=201)
async def push_rows(
    name: str,
    request: Request,
    mode: str = Query("append", description="append (default) or replace"),
    source_info: str | None = Query(
        None,
        description='JSON object merged into the recorded source; {"stream": KEY, '
        '"offsets": {...}} is committed with the version (stream consumers).',
    ),
) -> Response:
    """Push rows: a JSON array of objects, or NDJSON (one object per line)."""
    claims = _json_object(source_info, "source_info") or {}
    # A stream consumer's position is its own bookkeeping, committed with the version;
    # anything else the caller says about the source is a claim.
    info: dict[str, Any] = {k: claims.pop(k) for k in ("stream", "offsets") if k in claims}
    if claims:
        info[CLAIMED] = {"source_info": claims}
    body = await request.body()
    svc = _svc(request)
    result = await run_blocking(svc.push_rows, name, body, mode=mode, source_info=info)
    return json_response(result, 201)


# -- versions -----------------------------------------------------------------------------------
@router.get("/versions/{ref}", dependencies=READ)
def get_version(ref: str, request: Request) -> Response:
    return json_response(_svc(request).get_version(ref))


@router.get("/versions/{ref}/files", dependencies=READ)
def list_files(ref: str, request: Request) -> Response:
    """The version's Parquet parts in row order (``uri`` is the store path for a local store:
    the server's own directory layout is not shown)."""
    files = _svc(request).files(ref)
    shown = [
        f.model_copy(update={"uri": f.path}) if f.uri.startswith("file:") else f for f in files
    ]
    return json_response({"files": shown})


@router.get(
    "/versions/{ref}/files/{index}",
    dependencies=READ,
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_file(ref: str, index: int, request: Request) -> StreamingResponse:
    """Stream one Parquet part; ``X-Strata-Sha256`` carries its digest to verify."""
    part, reader = _svc(request).open_file(ref, index)
    return file_response(reader, sha256=part.sha256, what=f"part {index} of {ref}")


@router.post("/versions/{ref}/tags", dependencies=WRITE)
def tag_version(ref: str, body: TagBody, request: Request) -> Response:
    return json_response(_svc(request).tag_version(ref, body.tag))


@router.put("/versions/{ref}/annotations", dependencies=WRITE)
def annotate(ref: str, body: AnnotateBody, request: Request) -> Response:
    annotations: dict[str, ColumnAnnotation | dict[str, Any]] = dict(body.annotations)
    return json_response(_svc(request).annotate(ref, annotations))


@router.post("/versions/{ref}/validate", dependencies=WRITE)
async def validate(ref: str, body: ValidateBody, request: Request) -> Response:
    """Run a suite (parsed YAML/JSON object or YAML text); the report is stored."""
    svc = _svc(request)
    suite = rest_suite(body.suite)
    report = await run_blocking(svc.validate, ref, suite, sample_size=body.sample_size)
    return json_response(report)


@router.get("/versions/{ref}/reports", dependencies=READ)
def list_reports(ref: str, request: Request) -> Response:
    return json_response({"reports": _svc(request).list_reports(ref)})


@router.get("/versions/{ref}/profile", dependencies=READ)
async def profile(ref: str, request: Request) -> Response:
    svc = _svc(request)
    return json_response(await run_blocking(svc.profile, ref))


@router.get("/versions/{ref}/suggest-suite", dependencies=READ)
async def suggest_suite(ref: str, request: Request) -> Response:
    svc = _svc(request)
    return json_response(await run_blocking(svc.suggest_suite, ref))


@router.get("/versions/{ref}/quarantine", dependencies=READ)
def quarantine(ref: str, request: Request) -> Response:
    return json_response({"quarantine": _svc(request).quarantine(ref)})


@router.get("/versions/{ref}/lineage", dependencies=READ)
def lineage(ref: str, request: Request, direction: str = "up", depth: int = 5) -> Response:
    return json_response(_svc(request).lineage(ref, direction=direction, depth=depth))


@router.get("/diff", dependencies=READ)
async def diff(request: Request, a: str = Query(...), b: str = Query(...)) -> Response:
    svc = _svc(request)
    return json_response(await run_blocking(svc.diff, a, b))


# -- transforms ---------------------------------------------------------------------------------
@router.post("/transforms", dependencies=WRITE, status_code=201)
async def transform(body: TransformBody, request: Request) -> Response:
    """Run a SQL transform server-side (Python transforms run in the client and upload)."""
    svc = _svc(request)
    fields = body.model_dump(exclude={"suite"}) | {"suite": rest_suite(body.suite)}
    result = await run_blocking(svc.transform_with, TransformOptions.model_validate(fields))
    return json_response(result, 201)


@router.get("/transforms/{transform_id}", dependencies=READ)
def get_transform(transform_id: str, request: Request) -> Response:
    return json_response(_svc(request).get_transform(transform_id))
