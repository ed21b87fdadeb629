"""MLflow's artifact proxy: ``/api/2.0/mlflow-artifacts/artifacts[/{path}]``.

``path`` is an artifact-store path: a run's artifacts live at ``{experiment}/{run_id}/
artifacts/...`` (its ``mlflow-artifacts:/`` URI minus the scheme), a LoggedModel's at
``{experiment}/models/{model_id}/artifacts/...``. Uploads stream the request body into the
store (never held in memory, not subject to the JSON body limit) through the tracking
service, so the run or model must exist and the write is audited; paths owned by neither
are refused. Every operation resolves the path to its owner (a run or a LoggedModel) and
calls the tracking interface for it: no store access here. Downloads are streamed with
``Content-Length`` set, and the last chunk is only sent once the recorded sha256 matched, so
a corrupted file never arrives complete.
"""

from __future__ import annotations

import asyncio
import io
import logging
import mimetypes
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from strata.core.errors import DigestMismatch, InvalidInput, NotFound
from strata.core.paths import safe_relpath
from strata.core.principal import Permission
from strata.tracking.mlflow_api._common import (
    AJAX,
    add_route,
    json_response,
    opt_str,
    read_body,
    run_sync,
    tracking,
)
from strata.tracking.models import FileInfo, proxied_store_path

router = APIRouter()
log = logging.getLogger("strata.tracking.mlflow")
PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
CHUNK = 4 * 1024 * 1024


class BodyReader(io.RawIOBase):
    """The request body as a blocking file object for a worker thread: each ``read(n)``
    gathers up to ``min(n, CHUNK)`` bytes from the event loop in one hop."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop, what: str) -> None:
        super().__init__()
        self._chunks: AsyncIterator[bytes] = request.stream().__aiter__()
        self._loop = loop
        self._what = what
        self._eof = False

    def readable(self) -> bool:
        return True

    async def _gather(self, want: int) -> bytes:
        out = bytearray()
        while len(out) < want:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                break
            except ClientDisconnect:
                raise InvalidInput(
                    f"upload of {self._what} was interrupted: the client disconnected; "
                    "nothing was stored"
                ) from None
            out += chunk
        return bytes(out)

    def read(self, size: int | None = -1, /) -> bytes:
        if self._eof:
            return b""
        want = 1 << 62 if size is None or size < 0 else min(size, CHUNK)
        return asyncio.run_coroutine_threadsafe(self._gather(want), self._loop).result()


def _owner(request: Request, path: str, *, root_ok: bool = False) -> tuple[str, str, str]:
    """``("run" | "logged_model", id, path inside its artifacts)`` of a store path; NotFound if no
    run or LoggedModel owns it. ``root_ok``: the artifact root itself counts (path ``""``).
    Blocking: call in a worker thread."""
    parts = path.split("/")
    svc = tracking(request)
    for j in range(1, len(parts) if root_ok else len(parts) - 1):
        if parts[j] != "artifacts":
            continue
        root, rest = "/".join(parts[: j + 1]), "/".join(parts[j + 1 :])
        if j >= 2 and parts[j - 2] == "models":
            try:
                model = svc.get_logged_model(parts[j - 1])
            except NotFound:
                continue
            if proxied_store_path(model.artifact_location) == root:
                return "logged_model", model.model_id, rest
            continue
        try:
            run = svc.get_run(parts[j - 1])
        except NotFound:
            continue
        if proxied_store_path(run.info.artifact_uri) == root:
            return "run", run.info.run_id, rest
    raise NotFound(
        f"No run or logged model owns artifact path {path!r}: expected "
        "'<experiment>/<run_id>/artifacts/<file>' or "
        "'<experiment>/models/<model_id>/artifacts/<file>'",
        details={"path": path},
    )


async def upload_artifact(request: Request) -> Response:
    path = safe_relpath(request.path_params["artifact_path"])
    reader = BodyReader(request, asyncio.get_running_loop(), repr(path))
    body = cast(BinaryIO, reader)
    svc = tracking(request)

    def work() -> None:
        kind, owner, rest = _owner(request, path)
        if kind == "run":
            svc.log_artifact_stream(owner, rest, body)
        else:
            svc.log_model_artifact_stream(owner, rest, body)

    await run_sync(work)
    return json_response()


def _verified_chunks(reader: BinaryIO, what: str) -> Iterator[bytes]:
    """Yield the file's chunks, holding each back until the next read succeeded: the final
    read checks the digest, so on a mismatch the response ends short of Content-Length and
    the client fails instead of keeping corrupted bytes."""
    with reader:
        try:
            held = reader.read(CHUNK)
            while held:
                nxt = reader.read(CHUNK)
                yield held
                held = nxt
        except DigestMismatch as exc:
            log.error("refused to finish serving corrupted artifact %s: %s", what, exc.message)


def stream_file(opened: tuple[FileInfo, str, BinaryIO]) -> Response:
    """Stream a file the tracking service opened (``open_artifact`` and friends)."""
    info, _, reader = opened
    name = info.path.rsplit("/", 1)[-1]
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {
        "Content-Length": str(info.file_size or 0),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
    }
    return StreamingResponse(_verified_chunks(reader, info.path), media_type=media, headers=headers)


async def download_artifact(request: Request) -> Response:
    path = safe_relpath(request.path_params["artifact_path"])
    svc = tracking(request)

    def work() -> tuple[FileInfo, str, BinaryIO]:
        kind, owner, rest = _owner(request, path)
        if kind == "run":
            return svc.open_artifact(owner, rest)
        return svc.open_model_artifact(owner, rest)

    return stream_file(await run_sync(work))


def file_entries(files: list[FileInfo], under: str = "") -> list[dict[str, Any]]:
    """FileInfos as MLflow FileInfo JSON, their paths made relative to ``under``."""
    cut = len(under) + 1 if under else 0
    return [
        {"path": f.path[cut:], "is_dir": True}
        if f.is_dir
        else {"path": f.path[cut:], "is_dir": False, "file_size": f.file_size}
        for f in files
    ]


async def list_artifacts(request: Request) -> Response:
    """Immediate children of a run's or model's artifact directory; a path that none owns, a
    missing directory or a file lists as empty, as in MLflow."""
    body = await read_body(request)
    path = (opt_str(body, "path") or "").strip("/")
    path = safe_relpath(path) if path else ""
    svc = tracking(request)

    def work() -> list[dict[str, Any]]:
        try:
            kind, owner, rest = _owner(request, path, root_ok=True)
            if kind == "run":
                files = svc.list_artifacts(owner, rest)
            else:
                files = svc.list_model_artifacts(owner, rest)
        except (NotFound, InvalidInput):
            return []
        return file_entries(files, rest)

    files = await run_sync(work)
    return json_response({"files": files} if files else {})


async def delete_artifact(request: Request) -> Response:
    path = safe_relpath(request.path_params["artifact_path"])
    svc = tracking(request)

    def work() -> None:
        kind, owner, rest = _owner(request, path)
        if kind == "run":
            svc.delete_artifact(owner, rest)
        else:
            svc.delete_model_artifact(owner, rest)

    await run_sync(work)
    return json_response()


#: The MLflow UI's upload limit (its server refuses bigger bodies with these words).
UI_UPLOAD_LIMIT = 10 * 1024 * 1024
_TOO_LARGE = "Artifact size is too large. Max size is 10MB."


async def ui_upload_artifact(request: Request) -> Response:
    """``POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=..&path=..``: the MLflow UI's
    upload of one small file (the raw body, at most 10 MB) into a run's artifacts."""
    run_id = request.query_params.get("run_uuid")
    if not run_id:
        raise InvalidInput("Request must specify run_uuid.", details={"field": "run_uuid"})
    raw_path = request.query_params.get("path")
    if not raw_path:
        raise InvalidInput("Request must specify path.", details={"field": "path"})
    path = safe_relpath(raw_path)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > UI_UPLOAD_LIMIT:
        raise InvalidInput(_TOO_LARGE, details={"field": "body", "limit": UI_UPLOAD_LIMIT})
    data = bytearray()
    async for chunk in request.stream():  # counted as it arrives: a chunked body is no way round
        data += chunk
        if len(data) > UI_UPLOAD_LIMIT:
            raise InvalidInput(_TOO_LARGE, details={"field": "body", "limit": UI_UPLOAD_LIMIT})
    if not data:
        raise InvalidInput("Request must specify data.", details={"field": "body"})
    await run_sync(tracking(request).log_artifact_stream, run_id, path, io.BytesIO(bytes(data)))
    return json_response()


R, W = Permission.READ, Permission.WRITE
add_route(router, "/upload-artifact", ui_upload_artifact, ["POST"], W, prefixes=(AJAX,))
add_route(router, "/artifacts/{artifact_path:path}", upload_artifact, ["PUT"], W, prefixes=PREFIXES)
add_route(
    router, "/artifacts/{artifact_path:path}", download_artifact, ["GET"], R, prefixes=PREFIXES
)
add_route(router, "/artifacts", list_artifacts, ["GET"], R, prefixes=PREFIXES)
add_route(
    router, "/artifacts/{artifact_path:path}", delete_artifact, ["DELETE"], W, prefixes=PREFIXES
)
