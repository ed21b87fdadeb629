"""The HTTP transport every remote service uses: auth header, error mapping, retries off.

A server error body ``{"error_code", "message", "details"}`` is re-raised as the same
:class:`~strata.core.errors.StrataError` subclass the server raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from strata.core.errors import StrataError, Unavailable, error_from_payload


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

    def close(self) -> None:
        self.client.close()


__all__ = ["HttpTransport", "StrataError"]
