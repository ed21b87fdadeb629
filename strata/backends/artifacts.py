"""Artifact storage over fsspec: a local directory (plain path or ``file://``) or ``s3://``.

Artifacts live at their relative path under the root; the sha256/size of each file written here
is recorded in a sidecar ``.strata-digests/<path>.sha256`` (JSON). Listings never show that
prefix nor temp files (``.<name>.tmp-<hex>``), and paths naming either are rejected.

Writes are atomic: readers see the old object or the complete new one. Locally data goes to a
temp file in the target directory that is ``os.replace``d into place; on S3 an object appears
only when its (multipart) upload completes, and a failed upload is aborted. An overwrite drops
the old sidecar just before publishing and writes the new one right after, so a crash between
leaves an unchecked file, never a false mismatch. Driver errors are mapped to
:mod:`strata.core.errors` (chained as ``__cause__``); messages name the root URI and the path,
never credentials.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from strata.backends.artifact_io import ArtifactReader as ArtifactReader
from strata.backends.artifact_io import backend_errors as _backend_errors
from strata.backends.artifact_io import describe as _describe
from strata.core.errors import (
    DigestMismatch as DigestMismatch,
)
from strata.core.errors import (
    InvalidInput,
    NotFound,
    Unavailable,
)
from strata.core.paths import safe_relpath

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
DIGEST_PREFIX = ".strata-digests"
STRATA_FOLDERS = frozenset(
    {DIGEST_PREFIX, "datasets", "predictions", "serving", "monitoring", "audit"}
)
"""The artifact root's top-level folders that Strata's layers write themselves (dataset
versions, the prediction log, endpoint reports and policies, monitoring profiles, audit
checkpoints): an experiment's ``mlflow-artifacts:`` location may not lie under one, or a run
could add files where those layers read (tests/backends/test_artifact_folders.py holds every
layer's prefix to this list)."""


def strata_folder(path: str) -> str | None:
    """The folder of :data:`STRATA_FOLDERS` that ``path`` (a store path) lies under, compared
    without case (a case-insensitive disk stores ``Datasets`` in ``datasets``); None when it
    lies under none."""
    first = next((p for p in path.split("/") if p not in ("", ".")), "")
    lowered = first.lower()
    return next((f for f in STRATA_FOLDERS if f.lower() == lowered), None)


_S3_MIN_PART = 5 * 1024 * 1024
_RACE_RETRIES = 5  # reads of one path that overwrites may race before DigestMismatch stands
_RACE_WAIT = 0.005  # seconds, times the attempt: a raced read waiting for a digest to be recorded
_TEMP_RE = re.compile(r"^\..*\.tmp-[0-9a-f]{32}$")
_T = TypeVar("_T")


class SupportsRead(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ArtifactInfo:
    """One artifact; ``sha256`` is ``""`` for directories and for files with no recorded digest."""

    path: str
    size: int
    sha256: str
    is_dir: bool = False


def _temp_name(target: str) -> str:
    parent, name = os.path.split(target)
    return os.path.join(parent, f".{name[:100]}.tmp-{uuid.uuid4().hex}")


def _local_filesystem(**kwargs: Any) -> Any:
    """fsspec's local filesystem, imported when a store first touches files (metadata-only
    commands never do, and fsspec costs a CLI command tens of milliseconds to import)."""
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(**kwargs)


class ArtifactStore:
    """Artifacts under one root URI; every ``path`` is relative to it (see safe_relpath)."""

    def __init__(self, root_uri: str, *, s3_endpoint_url: str | None = None) -> None:
        """Parse the root; no I/O happens here (see :meth:`check`).

        Raises InvalidInput for an empty root, an unsupported scheme, a remote ``file://`` host
        or credentials embedded in an ``s3://`` URI (s3fs reads them from the environment).
        """
        parts = urlsplit(root_uri)
        scheme = parts.scheme.lower()
        self._fs_factory: Callable[..., Any] = _local_filesystem
        self._verified: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._fs_kwargs: dict[str, Any] = {}
        self._s3_client: dict[str, Any] = (
            {"endpoint_url": s3_endpoint_url} if s3_endpoint_url else {}
        )
        self._local = scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive
        if self._local:
            local = unquote(parts.path) if scheme == "file" else root_uri
            if not local or (scheme == "file" and parts.netloc not in ("", "localhost")):
                raise InvalidInput("local artifact root must be a directory path or file:///path")
            self._root = os.path.abspath(os.path.expanduser(local))
            self.uri = Path(self._root).as_uri()
        elif scheme == "s3":
            if "@" in parts.netloc or not parts.netloc:
                raise InvalidInput("s3 artifact root must be s3://bucket[/prefix], no credentials")
            from s3fs import S3FileSystem

            prefix = parts.path.strip("/")
            self._root = f"{parts.netloc}/{safe_relpath(prefix)}" if prefix else parts.netloc
            self._fs_factory = S3FileSystem
            self._fs_kwargs = {"use_listings_cache": False, "client_kwargs": self._s3_client}
            self.uri = f"s3://{self._root}"
        else:
            raise InvalidInput(
                f"unsupported artifact root scheme {scheme!r}: supported schemes are file, s3 "
                "(or a plain local directory path)"
            )

    @property
    def _fs(self) -> Any:
        # fsspec caches instances per process; s3fs instances must not cross a fork.
        return self._fs_factory(**self._fs_kwargs)

    @property
    def is_remote(self) -> bool:
        return not self._local

    def filesystem(self) -> Any:
        """A new fsspec filesystem of this store's kind, configured as the store is (the S3
        endpoint included), for readers that open stored files themselves (DuckDB, pyarrow);
        None for a local store. Not shared with the store's own instance (fork safety)."""
        if self._local:
            return None
        return self._fs_factory(**self._fs_kwargs, skip_instance_cache=True)

    def storage_options(self, url: str) -> dict[str, Any] | None:
        """fsspec/pandas ``storage_options`` for reading an outside ``s3://`` URL with the S3
        settings this store uses (its endpoint); None for other URLs or without an endpoint."""
        client = self._s3_client
        if client and url.startswith(("s3://", "s3a://")):
            return {"client_kwargs": dict(client)}
        return None

    def _rel(self, path: str, *, allow_root: bool = False) -> str:
        if allow_root and path in ("", "."):
            return ""
        rel = safe_relpath(path)
        if not self._visible(rel):
            msg = f"invalid artifact path {path!r}: {DIGEST_PREFIX}/ and temp names are reserved"
            raise InvalidInput(msg, details={"path": path})
        if self._local:
            self._refuse_symlinks(rel, path)
        return rel

    def _refuse_symlinks(self, rel: str, path: str) -> None:
        """Refuse a path that crosses a symbolic link below the root: a link planted in the
        store (by whoever can write the directory) must not lead reads or writes outside it."""
        current = self._root
        for part in rel.split("/"):
            current = os.path.join(current, part)
            if os.path.islink(current):
                raise InvalidInput(
                    f"invalid artifact path {path!r}: {part!r} is a symbolic link, which the "
                    "artifact store does not follow",
                    details={"path": path},
                )

    @staticmethod
    def _visible(rel: str) -> bool:
        parts = rel.split("/")
        return bool(rel) and parts[0] != DIGEST_PREFIX and not any(map(_TEMP_RE.match, parts))

    def _full(self, rel: str) -> str:
        return f"{self._root.rstrip('/')}/{rel}" if rel else self._root

    def _to_rel(self, name: str) -> str:
        return name.rstrip("/")[len(self._root.rstrip("/")) + 1 :]

    def _sidecar(self, rel: str) -> str:
        return self._full(f"{DIGEST_PREFIX}/{rel}.sha256")

    def _err(self, rel: str) -> AbstractContextManager[None]:
        return _backend_errors(self.uri, rel or "/")

    def uri_for(self, path: str) -> str:
        """The full ``file://`` or ``s3://`` URI of ``path``; ``""`` gives the root."""
        full = self._full(self._rel(path, allow_root=True))
        return Path(full).as_uri() if self._local else f"s3://{full}"

    def _write_local(
        self, full: str, rel: str, fill: Callable[[BinaryIO], _T], commit: Callable[[], None]
    ) -> _T:
        """Fill a temp file next to ``full`` (errors from ``fill`` propagate as is), fsync it,
        run ``commit`` and os.replace it into place; the temp is removed on any failure."""
        tmp = _temp_name(full)
        try:
            with self._err(rel):
                os.makedirs(os.path.dirname(full), exist_ok=True)
                out = open(tmp, "xb")  # noqa: SIM115 - closed below
            with out:
                result = fill(out)
                with self._err(rel):
                    out.flush()
                    os.fsync(out.fileno())
            with self._err(rel):
                commit()
                os.replace(tmp, full)
        except BaseException:
            with suppress(OSError):
                os.remove(tmp)
            raise
        return result

    def _read_digest(self, rel: str) -> tuple[str, int] | None:
        """The recorded (sha256, size); None if missing or not a valid record."""
        try:
            doc = json.loads(self._fs.cat_file(self._sidecar(rel)))
            sha, size = doc["sha256"], doc["size"]
        except (FileNotFoundError, NotADirectoryError, ValueError, TypeError, KeyError):
            return None
        return (sha, size) if isinstance(sha, str) and isinstance(size, int) else None

    def _drop_digest(self, rel: str) -> None:
        with suppress(FileNotFoundError):
            self._fs.rm_file(self._sidecar(rel))

    def _remove(self, full: str, *, tree: bool) -> None:
        if self._local:
            shutil.rmtree(full) if tree else os.remove(full)
            return
        # Exact keys via DeleteObjects: fsspec's rm() would glob names containing * ? [
        paths = [str(p) for p in self._fs.find(full)] if tree else [full]
        for i in range(0, len(paths), 1000):
            keys = [{"Key": p.split("/", 1)[1]} for p in paths[i : i + 1000]]
            bucket = self._root.split("/", 1)[0]
            out = self._fs.call_s3("delete_objects", Bucket=bucket, Delete={"Objects": keys})
            if out.get("Errors"):
                raise OSError(f"{len(out['Errors'])} objects could not be deleted")

    def put_stream(
        self, path: str, fileobj: SupportsRead, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ArtifactInfo:
        """Stream ``fileobj`` to ``path`` in ``chunk_size`` reads, then record its digest.

        Atomic: on any failure (one raised by ``fileobj`` propagates unchanged) the previous
        content, if any, stays and no temp file or partial upload is left. S3 parts are
        ``max(chunk_size, 5 MiB)`` and an upload has at most 10,000 parts.
        """
        if chunk_size <= 0:
            raise InvalidInput(f"chunk_size must be positive, got {chunk_size}")
        rel = self._rel(path)
        full = self._full(rel)
        sha, size = hashlib.sha256(), 0

        def pump(out: Any) -> None:
            nonlocal size
            while True:
                chunk = fileobj.read(chunk_size)
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise InvalidInput(f"source for {rel!r} returned {type(chunk).__name__}")
                if not chunk:
                    return
                sha.update(chunk)
                size += len(chunk)
                with self._err(rel):
                    out.write(chunk)

        if self._local:
            self._write_local(full, rel, pump, lambda: self._drop_digest(rel))
        else:
            with self._err(rel):
                out = self._fs.open(full, "wb", block_size=max(chunk_size, _S3_MIN_PART))
            try:
                pump(out)
                with self._err(rel):
                    self._drop_digest(rel)
                    out.close()  # completes the upload: the object appears now
            except BaseException:
                with suppress(Exception):
                    out.discard()  # aborts the multipart upload, if one was started
                out.closed = True
                raise
        info = ArtifactInfo(rel, size, sha.hexdigest())
        record = json.dumps({"sha256": info.sha256, "size": info.size}).encode()
        with self._err(rel):
            if self._local:
                self._write_local(self._sidecar(rel), rel, lambda f: f.write(record), lambda: None)
            else:
                self._fs.pipe_file(self._sidecar(rel), record)
        return info

    def put_file(self, path: str, local_path: str | os.PathLike[str]) -> ArtifactInfo:
        """Upload a local file (streamed); NotFound if ``local_path`` does not exist."""
        try:
            src = open(local_path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise NotFound(f"local file {os.fspath(local_path)!r} does not exist") from exc
        with src:
            return self.put_stream(path, src)

    def put_bytes(self, path: str, data: bytes) -> ArtifactInfo:
        return self.put_stream(path, io.BytesIO(data))

    def put_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> list[ArtifactInfo]:
        """Upload every file under ``local_dir`` to ``prefix`` (``""``: the root), sorted.

        All names are validated before the first upload; each file is atomic, the tree is not.
        """
        base = self._rel(prefix, allow_root=True)
        root = os.fspath(local_dir)
        if not os.path.isdir(root):
            raise NotFound(f"local directory {root!r} does not exist")
        jobs = []
        for dirpath, _, filenames in os.walk(root):
            for local in (os.path.join(dirpath, name) for name in filenames):
                sub = os.path.relpath(local, root).replace(os.sep, "/")
                jobs.append((self._rel(f"{base}/{sub}" if base else sub), local))
        return [self.put_file(rel, local) for rel, local in sorted(jobs)]

    def open_read(self, path: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ArtifactReader:
        """Open ``path`` for streaming, verified reading (see ArtifactReader); NotFound if absent.

        Overwriting ``path`` while it is being read may raise DigestMismatch.
        """
        rel = self._rel(path)
        with self._err(rel):
            expected = self._read_digest(rel)
            if self._local:
                raw: Any = open(self._full(rel), "rb")  # noqa: SIM115 - owned by the reader
            else:
                raw = self._fs.open(self._full(rel), "rb", block_size=max(chunk_size, _S3_MIN_PART))
        return ArtifactReader(raw, rel, self.uri, expected)

    def _fingerprint(self, rel: str) -> tuple[Any, ...]:
        """What changes whenever the file's bytes may have: its identity on disk or on S3."""
        if self._local:
            st = os.stat(self._full(rel), follow_symlinks=False)
            return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
        info = self._fs.info(self._full(rel))
        return (int(info["size"]), info.get("ETag"), str(info.get("LastModified")))

    def verify(self, path: str, sha256: str, size: int) -> None:
        """Raise DigestMismatch unless ``path`` holds exactly ``size`` bytes of ``sha256``.

        The digest comes from the caller's own record (the metadata database), not from the
        sidecar beside the file, which whoever rewrote the file could rewrite too. A success
        is remembered per (path, digest) with the file's fingerprint (size, mtime, ctime,
        inode locally; size, ETag and time on S3), so an unchanged file is hashed once per
        process and any write to it makes the next call hash it again.
        """
        rel = self._rel(path)
        with self._err(rel):
            before = self._fingerprint(rel)
            if self._verified.get((rel, sha256)) == before:
                return
            digest, n = hashlib.sha256(), 0
            block = {} if self._local else {"block_size": _S3_MIN_PART}
            with self._fs.open(self._full(rel), "rb", **block) as raw:
                while chunk := raw.read(DEFAULT_CHUNK_SIZE):
                    digest.update(chunk)
                    n += len(chunk)
        if (digest.hexdigest(), n) != (sha256, size):
            self._verified.pop((rel, sha256), None)
            raise DigestMismatch(
                f"artifact {rel!r} in {self.uri} was changed after it was recorded: recorded "
                f"sha256 {sha256} ({size} bytes), found {digest.hexdigest()} ({n} bytes); "
                "refusing to read it",
                details={"path": rel, "expected": sha256, "actual": digest.hexdigest()},
            )
        self._verified[(rel, sha256)] = before

    def protect(self, path: str) -> None:
        """Make a local file read-only on disk (published dataset parts never change); a
        no-op on S3, where the recorded digest is checked before every read instead."""
        if self._local:
            rel = self._rel(path)
            with self._err(rel):
                os.chmod(self._full(rel), 0o444)

    def get_bytes(self, path: str) -> bytes:
        """The whole content, verified (DigestMismatch on corruption).

        A read that an overwrite of ``path`` raced is read again, so a record rewritten while
        its readers poll it (a scoring job's state) is never reported corrupted. Every write
        drops the recorded digest before its bytes appear and records the new one after: a
        read that met the new bytes finds the record gone or changed. Bytes changed behind
        the store's back leave the record as it was, and that stays an error. Once a read
        has raced, only bytes read against a record are returned: a retry that finds none (a
        write between dropping the old record and recording the new one, or a record
        deleted) waits and reads again, and DigestMismatch stands when none appears.
        """
        rel, attempt, raced_by = self._rel(path), 1, None
        while True:
            with self.open_read(rel) as src:
                if raced_by is not None and src.expected is None:
                    if attempt >= _RACE_RETRIES:
                        raise DigestMismatch(
                            f"artifact {rel!r} in {self.uri} changed while it was read and "
                            f"no digest is recorded for what it holds now",
                            details={"path": rel, "expected": raced_by[0], "actual": None},
                        ) from None
                    attempt += 1
                    time.sleep(_RACE_WAIT * attempt)  # the write records its digest next
                    continue
                try:
                    return src.read()
                except DigestMismatch:
                    with self._err(rel):
                        raced = self._read_digest(rel) != src.expected
                    if attempt >= _RACE_RETRIES or not raced:
                        raise
                    raced_by = src.expected
                    attempt += 1

    def get_file(self, path: str, local_path: str | os.PathLike[str]) -> ArtifactInfo:
        """Download to ``local_path`` (parents created) via a verified temp file next to it.

        On DigestMismatch or any other failure nothing appears at (or replaces) ``local_path``.
        """
        dest = os.path.abspath(os.fspath(local_path))
        with self.open_read(path) as src:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = _temp_name(dest)
            try:
                with open(tmp, "xb") as out:
                    shutil.copyfileobj(src, out, DEFAULT_CHUNK_SIZE)
                os.replace(tmp, dest)
            except BaseException:
                with suppress(OSError):
                    os.remove(tmp)
                raise
            return ArtifactInfo(self._rel(path), src.bytes_read, src.sha256)

    def download_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> list[ArtifactInfo]:
        """Download every file under ``prefix`` (``""``: the root) into ``local_dir``, sorted.

        NotFound if a non-root ``prefix`` holds nothing; InvalidInput if it is a file.
        """
        base = self._rel(prefix, allow_root=True)
        found: list[str] = []
        with self._err(base), suppress(FileNotFoundError):
            found = sorted(self._to_rel(str(n)) for n in self._fs.find(self._full(base)))
        if base and found == [base]:
            raise InvalidInput(f"artifact {base!r} is a file, not a directory")
        files = [f for f in found if self._visible(f) and f != base]
        if base and not files:
            raise NotFound(f"artifact directory {base!r} does not exist in {self.uri}")
        subs = [rel[len(base) + 1 :] if base else rel for rel in files]
        root = os.fspath(local_dir)
        return [
            self.get_file(r, os.path.join(root, *s.split("/")))
            for r, s in zip(files, subs, strict=True)
        ]

    def list(self, prefix: str = "") -> list[ArtifactInfo]:
        """Immediate children of ``prefix`` (``""``: the root), sorted by path.

        Directories have ``is_dir=True``, size 0 and sha256 ``""``. An empty or missing root
        lists as ``[]``; a missing ``prefix`` raises NotFound, a file InvalidInput.
        """
        base = self._rel(prefix, allow_root=True)
        full = self._full(base).rstrip("/")
        try:
            with self._err(base):
                entries = self._fs.ls(full, detail=True)
        except NotFound:
            if base:
                raise
            entries = []
        dirs, files = [], []
        for entry in entries:
            if entry.get("islink"):
                continue  # symbolic links are never followed (see _refuse_symlinks)
            rel, is_dir = self._to_rel(str(entry["name"])), entry["type"] == "directory"
            if str(entry["name"]).rstrip("/") == full and not is_dir:
                raise InvalidInput(f"artifact {base!r} is a file, not a directory")
            if str(entry["name"]).rstrip("/") == full or not self._visible(rel):
                continue
            if is_dir:
                dirs.append(ArtifactInfo(rel, 0, "", is_dir=True))
            else:
                files.append((rel, int(entry["size"])))
        with ThreadPoolExecutor(max_workers=16) as pool, self._err(base):
            digests = pool.map(self._read_digest, [rel for rel, _ in files])
            dirs += [
                ArtifactInfo(r, n, d[0] if d else "")
                for (r, n), d in zip(files, digests, strict=True)
            ]
        return sorted(dirs, key=lambda i: i.path)

    def _stat(self, rel: str) -> tuple[bool, int]:
        with self._err(rel):
            st = self._fs.info(self._full(rel))
        is_dir = st["type"] == "directory"
        return is_dir, 0 if is_dir else int(st["size"])

    def info(self, path: str) -> ArtifactInfo:
        """A file (sha256 ``""`` if none recorded) or directory entry; NotFound if absent."""
        rel = self._rel(path)
        is_dir, size = self._stat(rel)
        with self._err(rel):
            digest = None if is_dir else self._read_digest(rel)
        return ArtifactInfo(rel, size, digest[0] if digest else "", is_dir=is_dir)

    def exists(self, path: str) -> bool:
        """Whether a file or directory (on S3: a non-empty prefix) exists at ``path``."""
        try:
            self._stat(self._rel(path))
        except NotFound:
            return False
        return True

    def size(self, path: str) -> int:
        """Size in bytes (0 for a directory); NotFound if absent."""
        return self._stat(self._rel(path))[1]

    def delete(self, path: str) -> None:
        """Delete a file or a whole tree, with its digest sidecars; NotFound if absent."""
        rel = self._rel(path)
        is_dir, _ = self._stat(rel)
        with self._err(rel):
            self._remove(self._full(rel), tree=is_dir)
            with suppress(FileNotFoundError):
                sidecar = self._full(f"{DIGEST_PREFIX}/{rel}") if is_dir else self._sidecar(rel)
                self._remove(sidecar, tree=is_dir)

    def check(self) -> None:
        """Raise Unavailable (naming the root URI) unless the root is reachable and usable.

        Locally the root directory is created if needed and must be writable; on S3 one
        ``ListObjectsV2`` under the prefix must succeed.
        """
        try:
            if self._local:
                os.makedirs(self._root, exist_ok=True)
                if not os.access(self._root, os.W_OK | os.X_OK):
                    raise PermissionError(13, "Permission denied")
            else:
                bucket, _, prefix = self._root.partition("/")
                prefix = f"{prefix}/" if prefix else ""
                self._fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except Exception as exc:
            msg = f"artifact store {self.uri} is not reachable ({_describe(exc)})"
            raise Unavailable(msg, details={"uri": self.uri}) from exc
