"""MLflow's multipart artifact uploads: ``/api/2.0/mlflow-artifacts/mpu/{create,complete,abort}``.

The ``mlflow`` client uses them for files of at least ``MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE``
when the server advertises ``multipart_uploads_enabled`` (``/api/3.0/mlflow/server-info``) or
``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true`` is set, so a large artifact is not one request:

1. ``create`` (write permission on the run or LoggedModel that owns the destination) opens a
   staging directory ``$STRATA_HOME/tmp/upload-*`` and answers one presigned URL per part:
   ``/uploads/mlflow/{upload_id}/{part_number}?token=...``. The token is random, per upload,
   and stored only as its sha256; like an S3 presigned URL it is the part's whole credential
   (the client sends those PUTs without its own headers), good for one upload and
   :data:`TTL_SECONDS`.
2. The client PUTs the parts in parallel; each PUT is streamed to a temporary file of its own
   (at most :data:`MAX_PART_BYTES`), then named after its content, ``part-00001.<sha256>``,
   and answered with that sha256 as the ``ETag``. Two PUTs of the same part (a retry racing
   the first try) never share a file: each keeps its bytes under its own digest.
3. ``complete`` (write permission again) takes, for every part 1..N, the file of the ETag the
   client lists (refused if there is none), then streams them in order through the tracking
   service into the artifact store — the same write as a single PUT: the path rules, the
   recorded sha256, the audit, local files or S3 alike — and removes the staging directory.
   ``abort`` removes it.

An upload older than :data:`TTL_SECONDS` is gone: its part URLs, ``complete`` and ``abort``
answer as for an unknown upload, and its directory is removed whenever a new upload is
created. The staging directories of a dead server process are swept
(:mod:`strata.core.staging`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import posixpath
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, cast

from fastapi import APIRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from strata.core.errors import InvalidInput, NotFound, PayloadTooLarge
from strata.core.paths import safe_relpath
from strata.core.principal import Permission
from strata.core.staging import make_workdir
from strata.tracking.mlflow_api._common import (
    add_route,
    bad_value,
    json_response,
    mlflow_errors,
    obj_list,
    opt_int,
    read_body,
    req_str,
    run_sync,
    to_int,
    tracking,
)
from strata.tracking.mlflow_api.artifacts import PREFIXES, _owner
from strata.tracking.mlflow_api.schemas import INTEGER, STRING, body_schema

router = APIRouter()

#: Where the part URLs point (outside ``/api``: the token in the URL is the credential).
PART_PREFIX = "/uploads/mlflow"
MAX_PARTS = 10_000  # as S3
MAX_PART_BYTES = 5 * 1024**3  # as S3
TTL_SECONDS = 24 * 3600
META = "upload.json"
_UPLOAD_ID = re.compile(r"^upload-[A-Za-z0-9_]{4,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _tmp_root(request: Request) -> Path:
    return Path(request.app.state.client.settings.home) / "tmp"


def _destination(request: Request, body: dict[str, Any]) -> str:
    """The store path the upload writes: the URL's directory plus the client file's name (as
    MLflow's artifact repositories join them)."""
    directory = safe_relpath(request.path_params["artifact_path"])
    name = posixpath.basename(req_str(body, "path").replace("\\", "/"))
    if not name:
        raise bad_value("path", "a file path", body.get("path"))
    return safe_relpath(f"{directory}/{name}")


def _gone(upload_id: str) -> NotFound:
    return NotFound(
        f"No multipart upload {upload_id!r}: it was completed, aborted or has expired",
        details={"upload_id": upload_id},
    )


def _upload_dir(request: Request, upload_id: str) -> tuple[Path, dict[str, Any]]:
    """The staging directory of a live upload and its metadata; NotFound when it was
    completed, aborted or is older than :data:`TTL_SECONDS` (blocking: call off the loop)."""
    if not _UPLOAD_ID.match(upload_id):
        raise InvalidInput(
            f"Invalid value {upload_id!r} for parameter 'upload_id': not an upload this "
            "server created",
            details={"field": "upload_id"},
        )
    path = _tmp_root(request) / upload_id
    try:
        meta = _meta(path)
        created = float(meta["created"])
    except (OSError, ValueError, KeyError, TypeError):
        raise _gone(upload_id) from None
    if created < time.time() - TTL_SECONDS:
        raise _gone(upload_id)
    return path, meta


def _meta(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((path / META).read_text())
    return meta


def _expire(root: Path, now: float) -> None:
    """Remove uploads older than the TTL (left by clients that neither completed nor aborted)."""
    for entry in root.glob("upload-*"):
        try:
            created = float(_meta(entry).get("created", now))
        except (OSError, ValueError):
            continue  # not a multipart upload (or one being created)
        if created < now - TTL_SECONDS:
            shutil.rmtree(entry, ignore_errors=True)


async def create_upload(request: Request) -> Response:
    body = await read_body(request)
    dest = _destination(request, body)
    parts = opt_int(body, "num_parts")
    parts = 1 if parts is None else parts
    if not 1 <= parts <= MAX_PARTS:
        raise InvalidInput(
            f"Invalid value {parts} for parameter 'num_parts' supplied. It must be between 1 "
            f"and {MAX_PARTS}",
            details={"field": "num_parts"},
        )
    root = _tmp_root(request)

    def work() -> tuple[str, str]:
        _owner(request, dest)  # NotFound unless a run or LoggedModel owns the destination
        now = time.time()
        _expire(root, now)
        path = Path(make_workdir(root, "upload-"))
        token = secrets.token_urlsafe(32)
        sha = hashlib.sha256(token.encode()).hexdigest()
        meta = {"dest": dest, "num_parts": parts, "created": now, "token_sha256": sha}
        (path / META).write_text(json.dumps(meta))
        return path.name, token

    upload_id, token = await run_sync(work)
    base = str(request.base_url).rstrip("/") + PART_PREFIX
    credentials = [
        {"url": f"{base}/{upload_id}/{n}?token={token}", "part_number": n, "headers": {}}
        for n in range(1, parts + 1)
    ]
    return json_response({"upload_id": upload_id, "credentials": credentials})


def _part_file(path: Path, number: int, etag: str) -> Path:
    return path / f"part-{number:05d}.{etag}"


async def upload_part(request: Request) -> Response:
    """``PUT /uploads/mlflow/{upload_id}/{part_number}?token=``: one part's bytes."""
    upload_id = request.path_params["upload_id"]
    path, meta = await run_sync(_upload_dir, request, upload_id)
    token = request.query_params.get("token", "")
    given = hashlib.sha256(token.encode()).hexdigest()
    if not token or not hmac.compare_digest(given, str(meta["token_sha256"])):
        raise _gone(upload_id)  # the same answer as an unknown upload: a wrong token learns nothing
    number = to_int(request.path_params["part_number"], "part_number")
    if not 1 <= number <= int(meta["num_parts"]):
        raise InvalidInput(
            f"Invalid value {number} for parameter 'part_number': this upload has parts 1 to "
            f"{meta['num_parts']}",
            details={"field": "part_number"},
        )
    try:  # this PUT's own file: a concurrent PUT of the same part writes another
        fd, name = tempfile.mkstemp(dir=path, prefix=f"part-{number:05d}.", suffix=".partial")
    except FileNotFoundError:
        raise _gone(upload_id) from None  # completed or aborted meanwhile
    partial = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_PART_BYTES:
                    raise PayloadTooLarge(
                        f"Part {number} of upload {upload_id!r} is larger than "
                        f"{MAX_PART_BYTES} bytes; use more parts",
                        details={"field": "body", "limit": MAX_PART_BYTES},
                    )
                digest.update(chunk)
                fh.write(chunk)
        etag = digest.hexdigest()
        os.replace(partial, _part_file(path, number, etag))
    except ClientDisconnect:
        partial.unlink(missing_ok=True)
        raise InvalidInput(
            f"upload of part {number} of {upload_id!r} was interrupted: the client "
            "disconnected; send the part again",
            details={"part_number": number},
        ) from None
    except FileNotFoundError:
        raise _gone(upload_id) from None  # the directory went (completed or aborted) meanwhile
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


class _Parts(io.RawIOBase):
    """The part files, in order, as one readable stream."""

    def __init__(self, files: list[Path]) -> None:
        super().__init__()
        self._files = files
        self._current: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if self._current is None:
                if not self._files:
                    return 0
                self._current = self._files.pop(0).open("rb")
            got = self._current.readinto(view)
            if got:
                return got
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


def _checked_parts(path: Path, meta: dict[str, Any], body: dict[str, Any]) -> list[Path]:
    """The part files in order: for each part 1..N, listed once, the file of the ETag the
    client lists (the file named after that content)."""
    listed: dict[int, str] = {}
    for entry in obj_list(body, "parts"):
        number = to_int(entry.get("part_number"), "part_number")
        listed[number] = str(entry.get("etag") or "").strip('"')
    expected = range(1, int(meta["num_parts"]) + 1)
    if sorted(listed) != list(expected):
        raise InvalidInput(
            f"parts must list each part 1 to {meta['num_parts']} once; got {sorted(listed)[:20]}",
            details={"field": "parts"},
        )
    files = []
    for number in expected:
        etag = listed[number]
        part = _part_file(path, number, etag) if _SHA256.match(etag) else None
        if part is None or not part.is_file():
            raise InvalidInput(
                f"Part {number} of upload {path.name!r} was never uploaded with the ETag "
                f"{etag[:80]!r}: list the ETag the server answered for it",
                details={"field": "parts", "part_number": number},
            )
        files.append(part)
    return files


async def complete_upload(request: Request) -> Response:
    body = await read_body(request)
    dest = _destination(request, body)
    upload_id = req_str(body, "upload_id")
    if not body.get("parts"):
        raise InvalidInput(
            "Missing value for required parameter 'parts'. See the API docs for more "
            "information about request parameters.",
            details={"field": "parts"},
        )
    svc = tracking(request)

    def work() -> None:
        path, meta = _upload_dir(request, upload_id)
        if meta["dest"] != dest:
            raise InvalidInput(
                f"Upload {upload_id!r} writes {meta['dest']!r}, not {dest!r}",
                details={"field": "path"},
            )
        files = _checked_parts(path, meta, body)
        kind, owner, rest = _owner(request, dest)
        with _Parts(files) as stream:
            reader = cast(BinaryIO, io.BufferedReader(stream, 4 * 1024 * 1024))
            if kind == "run":
                svc.log_artifact_stream(owner, rest, reader)
            else:
                svc.log_model_artifact_stream(owner, rest, reader)
        shutil.rmtree(path, ignore_errors=True)

    await run_sync(work)
    return json_response()


async def abort_upload(request: Request) -> Response:
    body = await read_body(request)
    dest = _destination(request, body)
    upload_id = req_str(body, "upload_id")

    def work() -> None:
        try:
            path, meta = _upload_dir(request, upload_id)
        except NotFound:
            return  # already gone: aborting twice is fine
        _owner(request, dest)
        if meta["dest"] != dest:
            raise InvalidInput(
                f"Upload {upload_id!r} does not write {dest!r}", details={"field": "path"}
            )
        shutil.rmtree(path, ignore_errors=True)

    await run_sync(work)
    return json_response()


_PART = body_schema(["part_number"], part_number=INTEGER, etag=STRING, url=STRING)
_BODIES = {
    "create": body_schema(["path"], path=STRING, num_parts=INTEGER),
    "complete": body_schema(
        ["path", "upload_id", "parts"],
        path=STRING,
        upload_id=STRING,
        parts={"type": "array", "items": _PART},
    ),
    "abort": body_schema(["path", "upload_id"], path=STRING, upload_id=STRING),
}
for _verb, _fn in (
    ("create", create_upload),
    ("complete", complete_upload),
    ("abort", abort_upload),
):
    add_route(
        router,
        f"/mpu/{_verb}/{{artifact_path:path}}",
        _fn,
        ["POST"],
        Permission.WRITE,
        prefixes=PREFIXES,
        body=_BODIES[_verb],
    )
# The presigned part URLs: no bearer token (the client sends none), the upload's token instead.
router.add_api_route(
    PART_PREFIX + "/{upload_id}/{part_number}",
    mlflow_errors(upload_part),
    methods=["PUT"],
    include_in_schema=False,
    name="mlflow_upload_part",
)
