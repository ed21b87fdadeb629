"""The one error tree of Strata.

```
StrataError (500, INTERNAL_ERROR)
 ├── NotFound          404  RESOURCE_DOES_NOT_EXIST
 ├── AlreadyExists     409  RESOURCE_ALREADY_EXISTS
 ├── InvalidInput      400  INVALID_PARAMETER_VALUE
 │    └── PayloadTooLarge 413 REQUEST_TOO_LARGE
 ├── Conflict          409  CONFLICT
 │    └── DigestMismatch  409 DIGEST_MISMATCH
 ├── PermissionDenied  403  PERMISSION_DENIED
 ├── Unauthenticated   401  UNAUTHENTICATED
 └── Unavailable       503  TEMPORARILY_UNAVAILABLE
```

Error codes follow MLflow's names where MLflow has one, so the official ``mlflow`` client maps
them to the same exceptions. The server renders every error as
``{"error_code", "message", "details"}`` and the remote client rebuilds the same class with
:func:`error_from_payload`. Messages name the object, what was expected and what was received,
and never contain a secret.
"""

from __future__ import annotations

from typing import Any


class StrataError(Exception):
    """Base of every error Strata raises on purpose."""

    error_code: str = "INTERNAL_ERROR"
    http_status: int = 500
    peer_words: str | None = None
    """The same refusal in the words of the peer API it arrived through, where that API
    words it otherwise (MLflow's REST surface: ``tracking/mlflow_api``); never sent by
    Strata's own REST."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_payload(self) -> dict[str, Any]:
        """The JSON body the server sends for this error."""
        return {"error_code": self.error_code, "message": self.message, "details": self.details}


class NotFound(StrataError):
    """The named object does not exist (or is not visible to the caller)."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class AlreadyExists(StrataError):
    """An object with this unique name or id exists already."""

    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 409


class InvalidInput(StrataError):
    """The request is malformed or breaks a documented rule."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the configured limit."""

    error_code = "REQUEST_TOO_LARGE"
    http_status = 413


class Conflict(StrataError):
    """The request contradicts the current state (e.g. re-logging a param with a new value)."""

    error_code = "CONFLICT"
    http_status = 409


class PermissionDenied(StrataError):
    """The caller is known but its role does not allow this operation."""

    error_code = "PERMISSION_DENIED"
    http_status = 403


class Unauthenticated(StrataError):
    """No valid credentials were presented."""

    error_code = "UNAUTHENTICATED"
    http_status = 401


class Unavailable(StrataError):
    """A backing service (database, object store, broker) cannot be reached."""

    error_code = "TEMPORARILY_UNAVAILABLE"
    http_status = 503


class DigestMismatch(Conflict):
    """Bytes read back do not match the sha256/size recorded when they were written (a stored
    artifact or dataset part changed, or arrived corrupted)."""

    error_code = "DIGEST_MISMATCH"


_ALL: tuple[type[StrataError], ...] = (
    StrataError,
    NotFound,
    AlreadyExists,
    InvalidInput,
    PayloadTooLarge,
    Conflict,
    DigestMismatch,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
_BY_CODE: dict[str, type[StrataError]] = {cls.error_code: cls for cls in _ALL}
# MLflow spellings that map onto our classes (used when reading MLflow-style payloads).
_BY_CODE.update(
    {
        "INVALID_STATE": Conflict,
        "BAD_REQUEST": InvalidInput,
        "ENDPOINT_NOT_FOUND": NotFound,
        "NOT_FOUND": NotFound,
        "DIGEST_MISMATCH": DigestMismatch,
    }
)


def error_from_payload(payload: dict[str, Any], status: int | None = None) -> StrataError:
    """Rebuild the error a server sent, as the same class the server raised."""
    code = str(payload.get("error_code", "INTERNAL_ERROR"))
    message = str(payload.get("message", "unknown error"))
    details = payload.get("details") or {}
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = next((c for c in _ALL[1:] if c.http_status == status), StrataError)
    return cls(message, details=details if isinstance(details, dict) else {"details": details})
