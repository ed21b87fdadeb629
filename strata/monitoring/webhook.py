"""Webhook notifications: an SSRF-aware URL policy, HMAC-signed JSON, retries with backoff.

A rule's webhook URL is chosen by whoever saves the rule, and the *server* calls it: an SSRF
vector. The policy, checked when a rule is saved and again before every call:

- scheme ``http`` or ``https`` only; no user info in the URL; a host is required;
- every address the host resolves to must be public: loopback, private (RFC 1918, ULA),
  link-local (cloud metadata at 169.254.169.254), multicast, reserved and unspecified
  addresses are refused — unless the host, or a network containing the address, is listed in
  ``STRATA_WEBHOOK_ALLOW`` (comma-separated host names and CIDRs, e.g.
  ``hooks.internal,10.1.0.0/16,127.0.0.1``);
- redirects are not followed (a public URL cannot bounce the call inward).

Residual risk, documented: the host is resolved for the check and again by the HTTP client
(DNS rebinding between the two); list internal receivers explicitly and keep the allow-list
short. The request carries ``X-Strata-Timestamp`` and ``X-Strata-Signature: sha256=<hex>``,
the HMAC-SHA256 of ``<timestamp>.<body>`` keyed by the secret in the environment variable the
action names — receivers should check it and reject old timestamps (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from strata.core.errors import InvalidInput

ALLOW_ENV = "STRATA_WEBHOOK_ALLOW"
TIMEOUT_S = 10.0
BACKOFF_S = 0.5


def _allowed() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts: set[str] = set()
    nets = []
    for item in (os.environ.get(ALLOW_ENV) or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item)
    return hosts, nets


def check_url(url: str, *, resolve: bool = True) -> str:
    """``url`` if the policy allows it (see module doc), else InvalidInput saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(
            f"webhook URL must be http or https, got scheme {parts.scheme!r}",
            details={"field": "url"},
        )
    if parts.username or parts.password:
        raise InvalidInput(
            "webhook URL must not carry credentials; sign with secret_env instead",
            details={"field": "url"},
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput("webhook URL has no host", details={"field": "url"})
    hosts, nets = _allowed()
    if host in hosts or not resolve:
        return url
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidInput(
            f"webhook host {host!r} does not resolve", details={"field": "url"}
        ) from None
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if any(addr in net for net in nets):
            continue
        if not addr.is_global or addr.is_multicast:
            raise InvalidInput(
                f"webhook host {host!r} resolves to the non-public address {addr}; list it in "
                f"{ALLOW_ENV} to allow internal receivers",
                details={"field": "url", "address": str(addr)},
            )
    return url


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send(
    url: str, payload: dict[str, Any], *, secret_env: str | None, retries: int
) -> dict[str, Any]:
    """POST ``payload``; retry on connection errors and 5xx with exponential backoff (0.5 s,
    1 s, 2 s...). Returns ``{"ok", "status", "attempts", "error"}``; never raises for the
    receiver's failures (the firing is recorded either way). The secret is never logged."""
    import httpx

    check_url(url)
    body = json.dumps(payload, default=str, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "strata-alerts"}
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            missing = f"the secret variable {secret_env} is not set on the server"
            return {"ok": False, "status": None, "attempts": 0, "error": missing}
        stamp = str(int(time.time()))
        headers["X-Strata-Timestamp"] = stamp
        headers["X-Strata-Signature"] = sign(secret, stamp, body)
    error = ""
    status = None
    attempts = 0
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False) as http:
        for attempt in range(retries + 1):
            attempts = attempt + 1
            try:
                response = http.post(url, content=body, headers=headers)
                status = response.status_code
                if status < 500:
                    ok = 200 <= status < 300
                    error = "" if ok else f"HTTP {status}"
                    return {"ok": ok, "status": status, "attempts": attempts, "error": error}
                error = f"HTTP {status}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            if attempt < retries:
                time.sleep(BACKOFF_S * 2**attempt)
    return {"ok": False, "status": status, "attempts": attempts, "error": error}
