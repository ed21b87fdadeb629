"""The registry's domain objects: registered models, versions, aliases and their history,
promotion requests and gates. Pure (no I/O); times are timezone-aware UTC.

A version pins what it was registered from — the source run, the model's path in it and the
sha256 of its ``strata-model.yaml`` (which lists the sha256 of every file) — so registering
copies nothing, and loading by ``models:/`` checks the bytes are still those.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from strata.core.errors import InvalidInput

#: Aliases that only an approved promotion request (or a rollback by an approver) may move.
PROTECTED_ALIASES = frozenset({"production"})
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
MAX_TAG_KEY = 250
MAX_TAG_VALUE = 5000
MAX_TEXT = 20_000
#: Version numbers, page offsets and sequence numbers fit a 32-bit signed column.
MAX_VERSION = 2**31 - 1


def check_name(name: Any, field: str = "name") -> str:
    """A model name: 1-128 of letters, digits, ``_ . -``, starting with a letter or digit
    (it appears in URIs ``models:/NAME@ALIAS`` and in URL paths)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(
            f"Invalid model {field} {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            details={"field": field},
        )
    return name


def check_alias(alias: Any) -> str:
    """An alias: lowercase letter first, then up to 63 of ``a-z 0-9 _ -``. ``latest`` and
    ``v<digits>`` are refused: they would read as a version in ``models:/`` URIs."""
    if (
        not isinstance(alias, str)
        or not ALIAS_RE.match(alias)
        or alias == "latest"
        or re.fullmatch(r"v\d+", alias)
    ):
        raise InvalidInput(
            f"Invalid alias {alias!r}: use a lowercase letter then up to 63 of a-z, 0-9, '_' "
            "or '-' (not 'latest' nor v<number>)",
            details={"field": "alias"},
        )
    return alias


def check_version(version: Any) -> int:
    """A version number: a positive integer (``"3"`` is accepted)."""
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or number > MAX_VERSION or isinstance(version, bool):
        raise InvalidInput(
            f"Invalid version {version!r}: expected a positive integer below 2**31",
            details={"field": "version"},
        )
    return number


def check_tag(key: Any, value: Any) -> tuple[str, str]:
    if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY:
        raise InvalidInput(
            f"Invalid tag key {key!r}: 1-{MAX_TAG_KEY} characters", details={"field": "key"}
        )
    text = str(value)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidInput(
            f"Tag {key!r}: value longer than {MAX_TAG_VALUE} characters",
            details={"field": "value"},
        )
    return key, text


def check_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidInput(
            f"{field} must be text of at most {MAX_TEXT} characters", details={"field": field}
        )
    return value


class VersionStatus(StrEnum):
    """``pending`` while the model's files are checked, ``ready`` once they are, ``failed``
    (with a message) when they could not be; only ready versions take aliases."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Gate(BaseModel):
    """A promotion gate: the candidate must score at least as well as the version holding
    the alias, on ``metric`` over the holdout ``dataset`` version (a data reference such as
    ``flights_holdout@3``) with ``target`` as its label column, within ``threshold``
    (absolute: ``candidate >= production - threshold`` when higher is better)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=100)
    dataset: str = Field(min_length=1, max_length=300)
    target: str = Field(min_length=1, max_length=250)
    threshold: float = Field(default=0.0, ge=0.0)
    higher_is_better: bool = True


class GateResult(BaseModel):
    """What a gate measured, recorded with the request."""

    passed: bool
    metric: str
    dataset: str
    threshold: float
    higher_is_better: bool
    candidate_version: int
    candidate_value: float
    production_version: int | None = None
    production_value: float | None = None
    message: str = ""
    evaluations: dict[str, Any] = Field(default_factory=dict)


class RegisteredModel(BaseModel):
    name: str
    description: str = ""
    owner: str
    tags: dict[str, str] = Field(default_factory=dict)
    #: Alias → version number.
    aliases: dict[str, int] = Field(default_factory=dict)
    latest_version: int | None = None
    gate: Gate | None = None
    created_at: datetime
    updated_at: datetime


class Lineage(BaseModel):
    """Where a version came from: its run, the run's code commit and its input datasets
    (``name``, ``digest``, ``context``, ``source`` as the run recorded them)."""

    run_id: str | None = None
    experiment_id: str | None = None
    git_commit: str | None = None
    datasets: list[dict[str, str]] = Field(default_factory=list)
    dataset_versions: list[str] = Field(default_factory=list)


class ModelVersion(BaseModel):
    name: str
    version: int
    #: The URI it was registered from (``runs:/RUN/PATH``, ``models:/m-...``...).
    source: str
    run_id: str | None = None
    #: The run-relative path of the model directory (``model``).
    artifact_path: str | None = None
    #: The MLflow 3 LoggedModel of the run at that path, when there is one.
    model_id: str | None = None
    status: VersionStatus
    status_message: str = ""
    #: ``strata`` (a strata-model.yaml) or ``mlflow`` (an MLmodel directory).
    format: str = "strata"
    flavor: str | None = None
    #: sha256 of the model's ``strata-model.yaml`` (or ``MLmodel``): it lists every file's.
    digest: str | None = None
    files: dict[str, str] = Field(default_factory=dict)
    signature: dict[str, Any] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    #: Owner-editable card sections (``intended_use``, ``limitations``, ``notes``).
    card: dict[str, str] = Field(default_factory=dict)
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class AliasMove(BaseModel):
    """One entry of an alias's history; ``from_version``/``to_version`` None = unset."""

    seq: int
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    #: ``set``, ``delete``, ``promote`` (an approved request), ``rollback`` or ``stage``.
    action: str
    actor: str
    reason: str = ""
    request_id: str | None = None
    at: datetime


class PromotionRequest(BaseModel):
    id: str
    name: str
    version: int
    alias: str
    reason: str
    status: RequestStatus
    requested_by: str
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str = ""
    gate: GateResult | None = None


class RegistrySettings(BaseModel):
    """Admin settings of the registry."""

    model_config = ConfigDict(extra="forbid")

    #: Let the requester of a promotion approve it (off: a second person must).
    allow_self_approval: bool = False


class CardSections(BaseModel):
    """The owner-editable parts of a model card."""

    model_config = ConfigDict(extra="forbid")

    intended_use: str | None = Field(default=None, max_length=MAX_TEXT)
    limitations: str | None = Field(default=None, max_length=MAX_TEXT)
    notes: str | None = Field(default=None, max_length=MAX_TEXT)

    @field_validator("*")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if isinstance(value, str) else value


#: MLflow's legacy stages and the aliases they map onto (``Archived``/``None`` clear them).
STAGE_ALIASES = {"production": "production", "staging": "staging"}
