"""Settings: ``STRATA_*`` environment variables, then an optional ``strata.toml``, then defaults.

The TOML file is read from ``$STRATA_CONFIG`` if set, else ``$STRATA_HOME/strata.toml``, else
``./strata.toml``. Backends are chosen by URI scheme; every URI left unset derives from
``home`` so that a bare ``pip install`` runs embedded on SQLite and local files.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from strata.core.errors import InvalidInput


def _default_home() -> Path:
    return Path(os.environ.get("STRATA_HOME") or Path.home() / ".strata").expanduser()


def config_file_path() -> Path | None:
    """The TOML file the settings read, or None when there is none."""
    explicit = os.environ.get("STRATA_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InvalidInput(
                f"STRATA_CONFIG names {str(path)!r}, which is not a file; point it at a "
                "strata.toml or unset it",
                details={"field": "STRATA_CONFIG"},
            )
        return path
    for candidate in (_default_home() / "strata.toml", Path.cwd() / "strata.toml"):
        if candidate.is_file():
            return candidate
    return None


ENV_PREFIX = "STRATA_"


def _file_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(
            f"Config file {str(path)!r} is not valid TOML: {exc}",
            details={"field": "config_file"},
        ) from None


class Settings(BaseModel):
    """The effective configuration of one Strata process.

    Built from keyword arguments, then ``STRATA_<FIELD>`` environment variables (any case),
    then the TOML file, then the defaults, in that order of precedence. A plain pydantic
    model reading its sources itself: pydantic-settings would add ~50 ms to every command.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, **values: Any) -> None:
        fields = type(self).model_fields
        env = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in os.environ.items()
            if key.upper().startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in fields
        }
        file = {k: v for k, v in _file_values(config_file_path()).items() if k in fields}
        super().__init__(**(file | env | values))

    home: Path = Field(default_factory=_default_home, description="Root of embedded state.")
    db_uri: str = Field("", description="Metadata database (sqlite:/// or postgresql+psycopg://).")
    artifact_uri: str = Field("", description="Artifact root (a directory, file:// or s3://).")
    online_uri: str = Field("", description="Online store (sqlite:/// or redis://).")
    stream_uri: str = Field("", description="Event stream (embedded, kafka://, redis://).")
    executor_uri: str = Field("local", description="Compute executor (local or ray://).")
    uri: str = Field("", description="Remote Strata server used by the SDK/CLI when set.")
    token: SecretStr | None = Field(None, description="API token for the remote server.")
    admin_token: SecretStr | None = Field(
        None, description="Token given to the first admin on first server start."
    )
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    auth: bool = True
    max_request_bytes: int = Field(
        64 * 1024 * 1024, description="Largest JSON request body accepted (bytes); 413 above."
    )
    trusted_modules: str = Field(
        "",
        description=(
            "Comma-separated Python packages whose functions stored definitions may run "
            "(on-demand feature views' python=); none by default."
        ),
    )
    log_json: bool = False
    log_level: str = "INFO"
    s3_endpoint_url: str = Field("", description="Custom S3 endpoint (MinIO, moto, ...).")
    audit_key: SecretStr | None = Field(
        None, description="HMAC key of the audit chain (else audit.key in home, mode 0600)."
    )
    secret_key: SecretStr | None = Field(
        None, description="Key encrypting registered connections (else secret.key in home)."
    )
    allowed_hosts: str = Field(
        "",
        description="Host names the server answers to (comma-separated; '*' any). Without "
        "auth, loopback names are always allowed and others refused unless listed here.",
    )
    allowed_origins: str = Field(
        "", description="Browser origins allowed to write (besides the server's own)."
    )
    source_allow_networks: str = Field(
        "",
        description="Networks (comma-separated CIDRs) the server may fetch http(s) sources "
        "from although they are private, loopback, link-local or reserved (refused by default).",
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    def model_post_init(self, __context: Any) -> None:
        if not self.db_uri:
            self.db_uri = f"sqlite:///{self.home / 'strata.db'}"
        if not self.artifact_uri:
            self.artifact_uri = str(self.home / "artifacts")
        if not self.online_uri:
            self.online_uri = f"sqlite:///{self.home / 'online.db'}"
        if not self.stream_uri:
            self.stream_uri = f"embedded://{self.home / 'streams'}"

    def masked(self) -> dict[str, Any]:
        """The settings as a dict with secrets and URI passwords replaced by ``***``."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[key] = "***" if value.get_secret_value() else ""
            elif value is None:
                out[key] = None
            elif isinstance(value, str):
                out[key] = redact_uri(value)
            else:
                out[key] = str(value) if isinstance(value, Path) else value
        return out


# The password may itself contain '@' (unescaped): match greedily up to the last '@' of the
# authority, so nothing of it survives.
_CRED_RE = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^/\s]*)@"
)


# Query parameters that carry secrets: ?password=, sasl_password=, aws_secret_access_key=,
# token=, api_key=, ... (any name containing one of these words).
_SECRET_PARAM_RE = re.compile(
    r"(?P<key>[?&;](?:[^=&;#\s]*?)(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key"
    r"|credential|signature|sig)(?:[^=&;#\s]*)=)(?P<value>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_uri(text: str) -> str:
    """Replace the password of any ``scheme://user:password@`` in ``text`` and the value of
    secret-looking query parameters (``password=``, ``sasl_password=``,
    ``aws_secret_access_key=``, ``token=``, ...) with ``***``."""
    text = _CRED_RE.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PARAM_RE.sub(lambda m: f"{m['key']}***", text)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings now (environment and TOML are re-read on every call).

    Raises InvalidInput naming the setting (and its ``STRATA_*`` variable) when a value does
    not parse, or when the config file is missing or not valid TOML.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ())) or "settings"
            problems.append(f"{name} (STRATA_{name.upper()}): {err.get('msg', 'invalid')}")
        raise InvalidInput(
            "Invalid setting " + "; ".join(problems),
            details={"fields": [str(e.get("loc", ("",))[0]) for e in exc.errors()]},
        ) from None
