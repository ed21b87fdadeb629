"""MLflow's artifact proxy: ``/api/2.0/mlflow-artifacts/artifacts[/{path}]``.

``path`` is an artifact-store path: a run's artifacts live at ``{experiment}/{run_id}/
artifacts/...`` (its ``mlflow-artifacts:/`` URI minus the scheme), a LoggedModel's at
``{experiment}/models/{model_id}/artifacts/...``. Uploads stream the request body into the
store (never held in memory, not subject to the JSON body limit) through the tracking
service, so the run or model must exist and the write is audited; paths owned by neither
are refused. Downloads stream from the store with ``Content-Length`` set, and the last chunk
is only sent once the recorded sha256 matched, so a corrupted file never arrives complete.
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

from strata.backends.artifacts import ArtifactStore
from strata.core.errors import DigestMismatch, InvalidInput, NotFound
from strata.core.paths import safe_relpath
from strata.core.principal import Permission
from strata.governance.audit import audited
from strata.tracking.mlflow_api._common import (
    add_route,
    json_response,
    opt_str,
    read_body,
    run_sync,
    tracking,
)
from strata.tracking.models import proxied_store_path

router = APIRouter()
log = logging.getLogger("strata.tracking.mlflow")
PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
CHUNK = 4 * 1024 * 1024


def store_of(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.client.backends.artifacts
    return store


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


def _owner(request: Request, path: str) -> tuple[str, str, str]:
    """``("run" | "logged_model", id, path inside its artifacts)`` of a store path; NotFound if no
    run or LoggedModel owns it (blocking: call in a worker thread)."""
    parts = path.split("/")
    svc = tracking(request)
    for j in range(1, len(parts) - 1):
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

    def work() -> None:
        kind, owner, rest = _owner(request, path)
        if kind == "run":
            tracking(request).log_artifact_stream(owner, rest, body)
        else:
            tracking(request).log_model_artifact_stream(owner, rest, body)

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


async def stream_file(request: Request, path: str, shown: str | None = None) -> Response:
    """Stream one stored file; 404 naming ``shown`` (default: the path) if absent."""
    store = store_of(request)
    label = shown or path
    try:
        info = await run_sync(store.info, path)
    except NotFound:
        raise NotFound(f"Artifact {label!r} does not exist", details={"path": label}) from None
    if info.is_dir:
        raise InvalidInput(
            f"Artifact {label!r} is a directory: list it and download its files",
            details={"path": label},
        )
    reader = await run_sync(store.open_read, path, chunk_size=CHUNK)
    name = path.rsplit("/", 1)[-1]
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {
        "Content-Length": str(info.size),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
    }
    return StreamingResponse(
        _verified_chunks(cast(BinaryIO, reader), label), media_type=media, headers=headers
    )


async def download_artifact(request: Request) -> Response:
    return await stream_file(request, safe_relpath(request.path_params["artifact_path"]))


def list_entries(store: ArtifactStore, path: str) -> list[dict[str, Any]]:
    """Immediate children of a store path as MLflow FileInfo JSON (names relative to
    ``path``); a missing directory or a file lists as empty, as in MLflow."""
    try:
        items = store.list(path)
    except (NotFound, InvalidInput):
        return []
    cut = len(path) + 1 if path else 0
    return [
        {"path": i.path[cut:], "is_dir": True}
        if i.is_dir
        else {"path": i.path[cut:], "is_dir": False, "file_size": i.size}
        for i in items
    ]


async def list_artifacts(request: Request) -> Response:
    body = await read_body(request)
    path = (opt_str(body, "path") or "").strip("/")
    path = safe_relpath(path) if path else ""
    files = await run_sync(list_entries, store_of(request), path)
    return json_response({"files": files} if files else {})


async def delete_artifact(request: Request) -> Response:
    path = safe_relpath(request.path_params["artifact_path"])
    store = store_of(request)
    db = request.app.state.client.backends.db

    def work() -> None:
        kind, owner, rest = _owner(request, path)
        with audited(db, f"{kind}.delete_artifact", kind, owner, {"path": rest}):
            store.delete(path)

    await run_sync(work)
    return json_response()


R, W = Permission.READ, Permission.WRITE
add_route(router, "/artifacts/{artifact_path:path}", upload_artifact, ["PUT"], W, prefixes=PREFIXES)
add_route(
    router, "/artifacts/{artifact_path:path}", download_artifact, ["GET"], R, prefixes=PREFIXES
)
add_route(router, "/artifacts", list_artifacts, ["GET"], R, prefixes=PREFIXES)
add_route(
    router, "/artifacts/{artifact_path:path}", delete_artifact, ["DELETE"], W, prefixes=PREFIXES
)
