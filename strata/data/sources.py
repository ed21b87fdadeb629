"""Source files: what a path, directory, glob or URL names, its format, and opening it.

Local sources are resolved by :func:`strata.core.paths.local_files`; URLs through fsspec
(``s3://``, ``https://``...) with the caller's storage options. Compressed files (gzip,
bz2, zstd, xz, lz4; by extension) are decompressed while read. Unreachable URLs are
Unavailable with the address's credentials masked; missing files are NotFound.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, NotFound, StrataError, Unavailable
from strata.core.paths import hidden_name, is_glob, local_files

FORMATS = ("csv", "parquet", "jsonl")
_COMPRESSED = (".gz", ".bz2", ".zst", ".xz", ".lz4")
_EXT = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def fs_error(display: str, exc: BaseException) -> StrataError:
    reason = redact_uri(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return Unavailable(
        f"Source {display} is unreachable: {type(exc).__name__}: {reason[:300]}",
        details={"source": display},
    )


def resolve_files(
    source: str, storage_options: dict[str, Any] | None = None
) -> tuple[Any, list[str]]:
    """(fsspec filesystem or None for local, sorted file paths) for a path, dir, glob or URL.

    NotFound names the path when nothing is there; Unavailable when the URL cannot be reached.
    """
    display = redact_uri(source)
    if "://" in source and not source.startswith("file://"):
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
            if is_glob(path):
                found = sorted(str(p) for p in fs.glob(path))
            elif fs.isdir(path):
                found = sorted(str(p) for p in fs.find(path) if not hidden_name(str(p)))
            elif fs.exists(path):
                found = [path]
            else:
                found = []
        except StrataError:
            raise
        except (ImportError, ValueError) as exc:
            raise InvalidInput(f"Source {display} is not a readable URL: {exc}") from None
        except Exception as exc:
            raise fs_error(display, exc) from None
        if not found:
            raise NotFound(
                f"Source {display} does not exist (no file at that URL)",
                details={"source": display},
            )
        protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
        if protocol in ("http", "https"):
            return fs, [source] if not is_glob(path) else found
        return fs, [f"{protocol}://{p}" if "://" not in p else p for p in found]
    return None, local_files(source)


def detect_format(path: str) -> str:
    base = path.lower().split("?", 1)[0]
    for suffix in _COMPRESSED:
        base = base.removesuffix(suffix)
    ext = os.path.splitext(base)[1]
    if ext in _EXT:
        return _EXT[ext]
    raise InvalidInput(
        f"Cannot tell the format of {redact_uri(path)!r} from its extension {ext or '(none)'}; "
        f"pass format= one of {', '.join(FORMATS)}",
        details={"field": "format"},
    )


def compression(path: str) -> str | None:
    for suffix, name in (
        (".gz", "gzip"),
        (".bz2", "bz2"),
        (".zst", "zstd"),
        (".xz", "xz"),
        (".lz4", "lz4"),
    ):
        if path.lower().endswith(suffix):
            return name
    return None


def open_source(fs: Any, path: str, display: str) -> Any:
    """A binary file object for ``path`` (decompressing by extension)."""
    try:
        if fs is None:
            if os.path.getsize(path) == 0:
                raise InvalidInput(
                    f"Source file {path!r} is empty: nothing to ingest", details={"source": path}
                )
            comp = compression(path)
            if comp in ("gzip", "bz2", "zstd", "lz4"):
                return pa.input_stream(path, compression=comp)
            if comp is not None:
                import lzma

                return lzma.open(path, "rb")
            return pa.OSFile(path, "rb")
        import fsspec

        of = fsspec.core.OpenFile(
            fs,
            path.split("://", 1)[-1] if "://" in path and not path.startswith("http") else path,
            mode="rb",
            compression=compression(path),
        )
        return of.open()
    except StrataError:
        raise
    except FileNotFoundError:
        raise NotFound(f"Source file {display!r} does not exist", details={"source": display})
    except Exception as exc:
        raise fs_error(display, exc) from None


def file_size(fs: Any, path: str) -> int | None:
    try:
        return int(os.path.getsize(path) if fs is None else fs.size(path))
    except Exception:
        return None
