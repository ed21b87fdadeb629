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
#: Retired audit keys (after a rotation), one file ``<key id>.key`` each, mode 0600.
RETIRED_AUDIT_DIR = "audit-keys"
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
    def audit_keys(self) -> dict[str, bytes]:
        """Every audit key that can verify records: the current one and the retired ones."""
        return retired_audit_keys(self.home) | {audit_key_id(self.audit): self.audit}

    @property
    def secret(self) -> bytes:
        """The AES-256-GCM key of registered connections."""
        return self._get("secret", SECRET_KEY_FILE, "STRATA_SECRET_KEY")


def audit_key_id(key: bytes) -> str:
    """A public name for an audit key (reveals nothing about it)."""
    return hashlib.sha256(b"strata-audit-key-id\n" + key).hexdigest()[:16]


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def retired_audit_keys(home: Path) -> dict[str, bytes]:
    """Key id → key of the audit keys retired by rotations (files in ``audit-keys/``)."""
    folder = home / RETIRED_AUDIT_DIR
    if not folder.is_dir():
        return {}
    keys: dict[str, bytes] = {}
    for path in sorted(folder.glob("*.key")):
        key = load_key(path, None, "STRATA_AUDIT_KEY")
        keys[audit_key_id(key)] = key
    return keys


def install_audit_key(keyring: KeyRing, old: bytes, new: bytes) -> None:
    """Archive ``old`` under ``audit-keys/`` and make ``new`` the audit key (``audit.key``,
    mode 0600, replaced atomically). Raises Unavailable when the key comes from
    STRATA_AUDIT_KEY (rotate it there: see docs/security.md)."""
    env = keyring._env["audit"]
    if env is not None and env.get_secret_value().strip():
        raise Unavailable(
            "The audit key comes from STRATA_AUDIT_KEY: put the old value in a 0600 file "
            f"{RETIRED_AUDIT_DIR}/<any name>.key in STRATA_HOME, then set the new value "
            "(docs/security.md, Rotating the audit key)"
        )
    _write_private(keyring.home / RETIRED_AUDIT_DIR / f"{audit_key_id(old)}.key", old.hex())
    _write_private(keyring.home / AUDIT_KEY_FILE, new.hex())
    with keyring._lock:
        keyring._cache["audit"] = new
