"""The HTTP transport every remote service uses: auth header, error mapping, retries off.

A server error body ``{"error_code", "message", "details"}`` is re-raised as the same
:class:`~strata.core.errors.StrataError` subclass the server raised.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from strata.core.errors import DigestMismatch, StrataError, Unavailable, error_from_payload

#: The response header carrying a streamed file's recorded sha256 (hex).
SHA256_HEADER = "X-Strata-Sha256"
DOWNLOAD_CHUNK = 1024 * 1024


class HttpTransport:
    """A keep-alive HTTP client bound to one Strata server."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "strata-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:500] or response.reason_phrase}
        if not isinstance(payload, dict):
            payload = {"message": str(payload)[:500]}
        raise error_from_payload(payload, response.status_code)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (None for an empty body)."""
        clean = None if params is None else {k: v for k, v in params.items() if v is not None}
        try:
            response = self.client.request(
                method, path, json=json, params=clean, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise Unavailable(
                f"Strata server {self.base_url} is unreachable: {type(exc).__name__}"
            ) from exc
        self._raise_for(response)
        if not response.content:
            return None
        return response.json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response (body not read); errors raised like :meth:`request`."""
        try:
            with self.client.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise Unavailable(
                f"Strata server {self.base_url} is unreachable: {type(exc).__name__}"
            ) from exc

    def download_verified(
        self,
        path: str,
        dest: str | os.PathLike[str],
        *,
        what: str,
        expected: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Stream ``GET path`` into ``dest``, checked against its sha256.

        The bytes go to a hidden temporary file beside ``dest`` and are hashed on the way;
        ``dest`` appears (by rename) only if the digest equals ``expected`` or, when that is
        None, the server's ``X-Strata-Sha256`` header (no check when it sent none). On a
        mismatch raises DigestMismatch naming ``what`` (``details`` added to its details)
        and leaves nothing behind; errors of the request itself are raised like
        :meth:`request`'s.
        """
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name[:100]}.tmp-{uuid.uuid4().hex}"
        sha = hashlib.sha256()
        try:
            with self.stream("GET", path) as response, tmp.open("xb") as out:
                want = expected if expected is not None else response.headers.get(SHA256_HEADER)
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
            actual = sha.hexdigest()
            if want and actual != want:
                raise DigestMismatch(
                    f"{what} arrived corrupted: the server recorded sha256 {want}, the bytes "
                    f"received hash to {actual}; retry the download",
                    details=(details or {}) | {"expected": want, "actual": actual},
                )
            os.replace(tmp, target)
        except BaseException:
            with suppress(OSError):
                tmp.unlink()
            raise

    def close(self) -> None:
        self.client.close()


__all__ = ["HttpTransport", "StrataError"]
