"""Keys kept outside the metadata database: the audit chain's HMAC key and the key that
encrypts registered connections' URLs.

Each comes from its environment variable when set (``STRATA_AUDIT_KEY``,
``STRATA_SECRET_KEY``: 64 hex digits, or any passphrase, which is hashed to 32 bytes), else
from a file in STRATA_HOME (``audit.key``, ``secret.key``) created on first use with 32
random bytes and mode 0600. A key file that others can read is refused: whoever can read
the key can forge audit records or decrypt the stored passwords.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import threading
from pathlib import Path

from pydantic import SecretStr

from strata.core.config import Settings
from strata.core.errors import Unavailable

AUDIT_KEY_FILE = "audit.key"
SECRET_KEY_FILE = "secret.key"


def _from_text(text: str) -> bytes:
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    return raw if len(raw) == 32 else hashlib.sha256(text.encode()).digest()


def load_key(path: Path, env_value: SecretStr | None, variable: str) -> bytes:
    """32 key bytes from ``env_value`` or the key file at ``path`` (created 0600 if absent).

    Raises Unavailable naming the file when it is readable or writable by group/others, or
    does not hold a key.
    """
    if env_value is not None and env_value.get_secret_value().strip():
        return _from_text(env_value.get_secret_value())
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole under a temp name, then linked into place: a process starting at the
        # same moment sees either no file or the complete key, and one key wins.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.remove(tmp)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise Unavailable(
            f"Key file {str(path)!r} has mode {oct(mode)}: group/others can read it. Run "
            f"`chmod 600 {path}` (or set {variable})",
            details={"path": str(path)},
        )
    text = path.read_text().strip()
    if not text:
        raise Unavailable(f"Key file {str(path)!r} is empty; delete it or set {variable}")
    return _from_text(text)


class KeyRing:
    """The keys of one Strata home, loaded once on first use."""

    def __init__(self, home: Path, audit_key: SecretStr | None, secret_key: SecretStr | None):
        self.home = home
        self._env = {"audit": audit_key, "secret": secret_key}
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.home, settings.audit_key, settings.secret_key)

    def _get(self, which: str, filename: str, variable: str) -> bytes:
        with self._lock:
            if which not in self._cache:
                self._cache[which] = load_key(self.home / filename, self._env[which], variable)
            return self._cache[which]

    @property
    def audit(self) -> bytes:
        """The audit chain's HMAC-SHA256 key."""
        return self._get("audit", AUDIT_KEY_FILE, "STRATA_AUDIT_KEY")

    @property
    def secret(self) -> bytes:
        """The AES-256-GCM key of registered connections."""
        return self._get("secret", SECRET_KEY_FILE, "STRATA_SECRET_KEY")
