"""A run's artifacts: browse directories, preview heads of files, download.

Files are fetched through ``tracking.download_artifacts`` (digest-checked) into a temporary
directory; previews read only a head (text 64 KiB, CSV 50 rows, Parquet 50 rows of the first
row group, JSON up to 1 MiB). Downloads are served as attachments except raster images, so a
run's HTML or SVG file can never run script in the UI's origin.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from strata.core.errors import InvalidInput, NotFound
from strata.tracking.models import FileInfo
from strata.ui.deps import client_of, page_viewer
from strata.ui.session import Viewer
from strata.ui.web import PageRoute, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MAX_PREVIEW_BYTES = 64 * 1024 * 1024
TEXT_HEAD = 64 * 1024
JSON_MAX = 1024 * 1024
HEAD_ROWS = 50
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TEXT_SUFFIXES = {
    ".txt", ".log", ".md", ".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sql", ".sh",
    ".html", ".svg", ".xml", ".jsonl", ".ndjson", ".mlmodel", "",
}  # fmt: skip


def _clean(path: str) -> str:
    norm = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    if norm in (".", ""):
        return ""
    if norm.startswith("..") or "\\" in norm or "\x00" in norm:
        raise InvalidInput(f"Invalid artifact path {path!r}", details={"field": "path"})
    return norm


def _file_info(request: Request, run_id: str, path: str) -> FileInfo:
    parent = posixpath.dirname(path)
    for info in client_of(request).tracking.list_artifacts(run_id, parent):
        if info.path == path:
            return info
    raise NotFound(f"Run {run_id!r} has no artifact {path!r}", details={"path": path})


def _fetch(request: Request, run_id: str, path: str) -> tuple[Path, Path]:
    """Download one file into a fresh temporary directory; returns (file, directory)."""
    tmp = Path(tempfile.mkdtemp(prefix="strata-ui-"))
    try:
        local = client_of(request).tracking.download_artifacts(run_id, path, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return local, tmp


@router.get("/runs/{run_id}/artifacts")
def browse(
    request: Request, run_id: str, path: str = "", who: Viewer = Depends(page_viewer)
) -> Response:
    """The children of a directory (an htmx partial of the run page)."""
    items = client_of(request).tracking.list_artifacts(run_id, _clean(path))
    return render(request, who, "artifacts.html", run_id=run_id, artifacts=items)


def _preview(local: Path, suffix: str) -> dict[str, Any]:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(local)
        batch = next(pf.iter_batches(batch_size=HEAD_ROWS), None)
        names = pf.schema_arrow.names
        rows = [] if batch is None else [list(r.values()) for r in batch.to_pylist()]
        return {
            "kind": "table",
            "columns": names,
            "rows": rows,
            "total": pf.metadata.num_rows,
        }
    with local.open("rb") as fh:
        head = fh.read(JSON_MAX if suffix == ".json" else TEXT_HEAD)
        truncated = bool(fh.read(1))
    text = head.decode("utf-8", errors="replace")
    if suffix in (".csv", ".tsv"):
        lines = text.splitlines()[: HEAD_ROWS + 1]
        delim = "\t" if suffix == ".tsv" else ","
        parsed = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delim))
        return {
            "kind": "table",
            "columns": parsed[0] if parsed else [],
            "rows": parsed[1:],
            "total": None,
        }
    if suffix == ".json" and not truncated:
        try:
            return {"kind": "text", "text": json.dumps(json.loads(text), indent=2)}
        except ValueError:
            pass
    if b"\x00" in head[:8192]:
        return {"kind": "binary"}
    return {"kind": "text", "text": text, "truncated": truncated}


@router.get("/runs/{run_id}/preview")
def preview(
    request: Request, run_id: str, path: str, who: Viewer = Depends(page_viewer)
) -> Response:
    """A file's head (an htmx partial): text, pretty JSON, CSV/Parquet rows, or an image."""
    clean = _clean(path)
    info = _file_info(request, run_id, clean)
    suffix = posixpath.splitext(clean)[1].lower()
    context: dict[str, Any] = {"run_id": run_id, "info": info}
    if info.is_dir:
        raise InvalidInput(f"{clean!r} is a directory", details={"path": clean})
    if suffix in IMAGE_TYPES:
        context["preview"] = {"kind": "image"}
    elif (info.file_size or 0) > MAX_PREVIEW_BYTES:
        context["preview"] = {"kind": "too_large"}
    else:
        local, tmp = _fetch(request, run_id, clean)
        try:
            context["preview"] = _preview(local, suffix)
        except Exception as exc:  # a corrupt file is the artifact's problem, not a 500
            context["preview"] = {"kind": "error", "message": f"{type(exc).__name__}: {exc}"}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return render(request, who, "preview.html", **context)


@router.get("/runs/{run_id}/raw")
def raw(request: Request, run_id: str, path: str, who: Viewer = Depends(page_viewer)) -> Response:
    """The file itself: raster images inline, anything else as a download."""
    clean = _clean(path)
    info = _file_info(request, run_id, clean)
    if info.is_dir:
        raise InvalidInput(f"{clean!r} is a directory", details={"path": clean})
    local, tmp = _fetch(request, run_id, clean)
    suffix = posixpath.splitext(clean)[1].lower()
    media = IMAGE_TYPES.get(suffix)
    return FileResponse(
        local,
        media_type=media or "application/octet-stream",
        filename=posixpath.basename(clean),
        content_disposition_type="inline" if media else "attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=60",
        },
        background=BackgroundTask(shutil.rmtree, tmp, True),
    )
