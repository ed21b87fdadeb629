"""The one error tree: codes, HTTP statuses, and the server-payload round trip."""

from __future__ import annotations

import pytest

from strata.core import errors
from strata.core.errors import (
    AlreadyExists,
    Conflict,
    DigestMismatch,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    StrataError,
    Unauthenticated,
    Unavailable,
    error_from_payload,
)

EXPECTED = [
    (StrataError, "INTERNAL_ERROR", 500),
    (NotFound, "RESOURCE_DOES_NOT_EXIST", 404),
    (AlreadyExists, "RESOURCE_ALREADY_EXISTS", 409),
    (InvalidInput, "INVALID_PARAMETER_VALUE", 400),
    (PayloadTooLarge, "REQUEST_TOO_LARGE", 413),
    (Conflict, "CONFLICT", 409),
    (DigestMismatch, "DIGEST_MISMATCH", 409),
    (PermissionDenied, "PERMISSION_DENIED", 403),
    (Unauthenticated, "UNAUTHENTICATED", 401),
    (Unavailable, "TEMPORARILY_UNAVAILABLE", 503),
]


@pytest.mark.parametrize(("cls", "code", "status"), EXPECTED)
def test_codes_and_statuses(cls: type[StrataError], code: str, status: int) -> None:
    assert cls.error_code == code
    assert cls.http_status == status
    assert issubclass(cls, StrataError)
    assert issubclass(cls, Exception)


def test_every_error_class_is_listed() -> None:
    defined = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, StrataError)
    }
    assert defined == {cls for cls, _, _ in EXPECTED}
    codes = [cls.error_code for cls, _, _ in EXPECTED]
    assert len(set(codes)) == len(codes), "error codes must be unique"


@pytest.mark.parametrize(("cls", "code", "status"), EXPECTED)
def test_payload_round_trip_keeps_class_message_details(
    cls: type[StrataError], code: str, status: int
) -> None:
    original = cls("Run 'abc' does not exist", details={"run_id": "abc", "n": 3})
    payload = original.to_payload()
    assert payload == {
        "error_code": code,
        "message": "Run 'abc' does not exist",
        "details": {"run_id": "abc", "n": 3},
    }
    rebuilt = error_from_payload(payload, status)
    assert type(rebuilt) is cls
    assert rebuilt.message == original.message
    assert rebuilt.details == original.details
    assert str(rebuilt) == "Run 'abc' does not exist"


def test_details_default_to_empty_dict_and_are_copied() -> None:
    shared = {"a": 1}
    err = InvalidInput("bad", details=shared)
    shared["a"] = 2
    assert err.details == {"a": 1}
    assert InvalidInput("bad").details == {}
    assert InvalidInput("bad").to_payload()["details"] == {}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("INVALID_STATE", Conflict),
        ("BAD_REQUEST", InvalidInput),
        ("ENDPOINT_NOT_FOUND", NotFound),
        ("NOT_FOUND", NotFound),
    ],
)
def test_mlflow_spellings_map_onto_our_classes(code: str, cls: type[StrataError]) -> None:
    assert type(error_from_payload({"error_code": code, "message": "m"})) is cls


@pytest.mark.parametrize(
    ("status", "cls"),
    [(404, NotFound), (401, Unauthenticated), (403, PermissionDenied), (503, Unavailable)],
)
def test_unknown_code_falls_back_to_http_status(status: int, cls: type[StrataError]) -> None:
    err = error_from_payload({"error_code": "SOMETHING_NEW", "message": "m"}, status)
    assert type(err) is cls
    assert err.message == "m"


def test_unknown_code_and_status_is_base_error() -> None:
    err = error_from_payload({"error_code": "WHAT", "message": "boom"}, 418)
    assert type(err) is StrataError
    assert error_from_payload({}, None).message == "unknown error"


def test_non_dict_details_are_wrapped() -> None:
    err = error_from_payload({"error_code": "CONFLICT", "message": "m", "details": ["x"]})
    assert type(err) is Conflict
    assert err.details == {"details": ["x"]}
