"""The server fetching an ``http(s)://`` source on a caller's behalf, without becoming a proxy
into its own network.

- **Every address is checked where the connection is made.** The host name is resolved once
  and the socket connects to the checked address (TLS still verifies the name), so a DNS
  answer that changes between a check and the connect (rebinding) never reaches an internal
  service. A name with any refused address is refused whole.
- **Refused by default:** loopback, private (RFC 1918), carrier-grade NAT (100.64/10), unique
  local (fc00::/7), link-local (cloud metadata at 169.254.169.254), multicast, reserved and
  unspecified addresses — anything not globally routable. IPv4-mapped IPv6 addresses are
  judged as the IPv4 address they carry. An admin may allow networks with
  ``STRATA_SOURCE_ALLOW_NETWORKS`` (comma-separated CIDRs, e.g. an internal file server).
- **Redirects are followed by hand** (at most :data:`MAX_REDIRECTS`), each hop checked like
  the first: http(s) only, and the connection guard above applies to every hop.
- **Errors do not map the network for the caller:** a connection that fails says "source
  unreachable" with the request id; the cause (refused, timed out, reset) goes to the
  server's log only. Proxies from the environment are never used (they would connect for us).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from strata.core.config import redact_uri
from strata.core.errors import InvalidInput, NotFound, StrataError, Unavailable
from strata.core.principal import current

log = logging.getLogger("strata.data.fetch")

MAX_REDIRECTS = 5
TIMEOUT_SECONDS = 30.0
CHUNK = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[IPNetwork]:
    """``"10.0.0.0/8, fd00::/8"`` as networks; InvalidInput names a bad entry."""
    out: list[IPNetwork] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidInput(
                f"STRATA_SOURCE_ALLOW_NETWORKS has {item!r}, which is not a network; expected "
                "comma-separated CIDRs such as 10.1.2.0/24 or fd00:1::/64",
                details={"field": "source_allow_networks"},
            ) from None
    return out


def refused(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> bool:
    """Whether the server must not connect to ``ip`` (see the module docstring)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return False
    return not ip.is_global or ip.is_multicast or ip.is_reserved


class SourceRefused(InvalidInput):
    """The source's host is an address the server does not fetch from."""


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, but ``connect_tcp`` resolves the host itself, refuses it if
    any address is refused, and connects to the checked address only."""

    def __init__(self, allowed: list[IPNetwork]) -> None:
        self.allowed = allowed
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
        bad = [a for a in addresses if refused(a, self.allowed)]
        if bad or not addresses:
            raise SourceRefused(
                f"The server does not fetch from {host!r}: it resolves to a loopback, private, "
                "link-local, shared or reserved address. An admin can allow a network with "
                "STRATA_SOURCE_ALLOW_NETWORKS",
                details={"field": "source"},
            )
        last: Exception | None = None
        for address in addresses:
            try:
                return self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise SourceRefused("The server does not fetch sources over Unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def guarded_client(allowed: list[IPNetwork]) -> httpx.Client:
    """An httpx client that connects only to addresses :func:`refused` lets through, follows
    no redirect itself and ignores proxy settings in the environment."""
    transport = httpx.HTTPTransport(retries=0)
    # httpx has no public hook for the network backend; its pool is httpcore's, which has.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=_GuardedBackend(allowed),
    )
    return httpx.Client(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        headers={"User-Agent": "strata-server"},
    )


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host (literal IPv6 addresses in brackets work)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SourceRefused(
            f"The server fetches only http(s) URLs with a host name; got {redact_uri(url)!r}",
            details={"field": "source"},
        )
    if parts.username or parts.password:
        raise SourceRefused(
            "Credentials in an http(s) source URL are not sent by the server; make the file "
            "reachable without them or upload it",
            details={"field": "source"},
        )
    return url


def _unreachable(url: str, exc: BaseException) -> Unavailable:
    request_id = current().request_id or "-"
    log.warning(
        "source %s unreachable (request %s): %s: %s",
        redact_uri(url),
        request_id,
        type(exc).__name__,
        exc,
    )
    return Unavailable(
        f"Source {redact_uri(url)} is unreachable (request id {request_id}); the server's log "
        "has the cause",
        details={"source": redact_uri(url), "request_id": request_id},
    )


def download(url: str, dest_dir: str, allowed: list[IPNetwork]) -> str:
    """Fetch ``url`` into ``dest_dir`` (named after the URL's last path segment, so the
    extension still tells the format); return the local path.

    Raises SourceRefused (400) for a refused scheme, address or redirect, NotFound (404) when
    the source answers 404/410, Unavailable (503) for anything else that fails.
    """
    current_url = check_url(url)
    with guarded_client(allowed) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with client.stream("GET", current_url) as resp:
                    if resp.status_code in _REDIRECTS and "location" in resp.headers:
                        current_url = check_url(urljoin(current_url, resp.headers["location"]))
                        continue
                    if resp.status_code in (404, 410):
                        raise NotFound(
                            f"Source {redact_uri(url)} does not exist (HTTP {resp.status_code})",
                            details={"source": redact_uri(url)},
                        )
                    if resp.status_code >= 400:
                        raise Unavailable(
                            f"Source {redact_uri(url)} answered HTTP {resp.status_code}",
                            details={"source": redact_uri(url), "status": resp.status_code},
                        )
                    name = os.path.basename(urlsplit(current_url).path) or "download"
                    path = os.path.join(dest_dir, _safe_name(name))
                    with open(path, "wb") as out:
                        for chunk in resp.iter_bytes(CHUNK):
                            out.write(chunk)
                    return path
            except StrataError:
                raise
            except httpx.HTTPError as exc:
                raise _unreachable(current_url, exc) from None
    raise SourceRefused(
        f"Source {redact_uri(url)} redirected more than {MAX_REDIRECTS} times",
        details={"field": "source"},
    )


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return cleaned[:200] or "download"
