"""Reading artifacts: :class:`ArtifactReader` (a stream that checks the recorded digest at its
end) and the mapping of storage drivers' errors to Strata's (:func:`backend_errors`), shared
by :mod:`strata.backends.artifacts`' store."""

from __future__ import annotations

import errno
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from strata.core.errors import (
    Conflict,
    DigestMismatch,
    InvalidInput,
    NotFound,
    StrataError,
    Unavailable,
)


def describe(exc: BaseException) -> str:
    """Exception type plus the OS/S3 reason text (never the args, which may carry URLs)."""
    reason = exc.strerror if isinstance(exc, OSError) else None
    return f"{type(exc).__name__}: {reason}" if isinstance(reason, str) else type(exc).__name__


@contextmanager
def backend_errors(uri: str, path: str) -> Iterator[None]:
    """Map driver exceptions raised in the block to the Strata error tree."""
    try:
        yield
    except StrataError:
        raise
    except FileNotFoundError as exc:
        msg = f"artifact {path!r} does not exist in {uri}"
        raise NotFound(msg, details={"path": path}) from exc
    except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        msg = f"artifact {path!r} conflicts with an existing file or directory in {uri}"
        raise Conflict(msg, details={"path": path}) from exc
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            msg = f"artifact store {uri} failed on {path!r} ({describe(exc)})"
            raise Unavailable(msg, details={"path": path}) from exc
        msg = f"artifact path {path[:80]!r}... is too long for the store (a name of ~255 bytes)"
        raise InvalidInput(msg, details={"field": "path"}) from exc
    except Exception as exc:
        msg = f"artifact store {uri} failed on {path!r} ({describe(exc)})"
        raise Unavailable(msg, details={"path": path}) from exc


class ArtifactReader(io.BufferedIOBase):
    """A sequential, non-seekable binary stream hashing what it reads (``sha256``, ``bytes_read``).

    At EOF (the read returning ``b""``, or ``read()``/``read(-1)``) that read raises
    DigestMismatch if a digest was recorded and differs. Closing before EOF skips the check.
    """

    def __init__(self, raw: Any, path: str, uri: str, expected: tuple[str, int] | None) -> None:
        super().__init__()
        self._raw, self._path, self._uri, self._expected = raw, path, uri, expected
        self._hash = hashlib.sha256()
        self.bytes_read = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def expected(self) -> tuple[str, int] | None:
        """The (sha256, size) recorded when the read began; None if none was."""
        return self._expected

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        with backend_errors(self._uri, self._path):
            data = bytes(self._raw.read(-1 if size is None else size))
        self._hash.update(data)
        self.bytes_read += len(data)
        at_eof = size is None or size < 0 or (size > 0 and not data)
        if at_eof and self._expected and self._expected != (self.sha256, self.bytes_read):
            sha, n = self._expected
            raise DigestMismatch(
                f"artifact {self._path!r} in {self._uri} is corrupted: recorded sha256 {sha} "
                f"({n} bytes), read sha256 {self.sha256} ({self.bytes_read} bytes)",
                details={"path": self._path, "expected": sha, "actual": self.sha256},
            )
        return data

    def close(self) -> None:
        if not self.closed:
            with suppress(Exception):
                self._raw.close()
        super().close()
