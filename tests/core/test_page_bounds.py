"""Page tokens carry positions a database BIGINT can hold: a forged larger one is bad input
(400), never an out-of-range error from the database (500)."""

from __future__ import annotations

import base64
import json

import pytest

from strata.core.errors import InvalidInput
from strata.core.page import (
    MAX_POSITION,
    MAX_POSITION_TEXT,
    MAX_TOKEN_LENGTH,
    decode_page_token,
    decode_position,
    encode_page_token,
    encode_position,
)


def test_positions_are_bounded() -> None:
    assert (
        decode_page_token(encode_page_token("after_seq", MAX_POSITION), "after_seq") == MAX_POSITION
    )
    for bad in (MAX_POSITION + 1, 2888576596079719305049014272, -1):
        with pytest.raises(InvalidInput):
            decode_page_token(encode_page_token("after_seq", bad), "after_seq")


FIELDS: dict[str, type] = {"before_us": int, "before_id": str}


def test_a_keyset_position_round_trips() -> None:
    position: dict[str, int | str] = {"before_us": 1_764_000_000_000_000, "before_id": "ab12"}
    assert decode_position(encode_position(position), FIELDS) == position
    assert decode_position(None, FIELDS) is None and decode_position("", FIELDS) is None


@pytest.mark.parametrize(
    "token",
    [
        "nonsense!",  # not base64
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),  # not UTF-8 JSON
        encode_position({"before_us": 1}),  # a field missing
        encode_position({"before_us": 1, "before_id": "a", "offset": 3}),  # one too many
        encode_position({"before_us": "1", "before_id": "a"}),  # a number as text
        encode_position({"before_us": 1, "before_id": 7}),  # text as a number
        encode_position({"before_us": True, "before_id": "a"}),  # a bool is no number here
        encode_position({"before_us": -1, "before_id": "a"}),
        encode_position({"before_us": MAX_POSITION + 1, "before_id": "a"}),
        encode_position({"before_us": 1, "before_id": "x" * (MAX_POSITION_TEXT + 1)}),
        base64.urlsafe_b64encode(json.dumps([1, "a"]).encode()).decode(),  # not an object
    ],
)
def test_a_forged_keyset_position_is_bad_input(token: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_position(token, FIELDS)
    assert caught.value.details == {"field": "page_token"}


def test_a_long_token_is_refused_unread() -> None:
    token = base64.urlsafe_b64encode(b"[" * 1000).decode()  # deep enough to recurse, if read
    assert len(token) > MAX_TOKEN_LENGTH
    for decode in (lambda: decode_position(token, FIELDS), lambda: decode_page_token(token, "x")):
        with pytest.raises(InvalidInput, match="longer than") as caught:
            decode()
        assert caught.value.details == {"field": "page_token"}


def test_a_token_nested_past_the_parser_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind the length cap too: JSON nested past the parser's recursion limit."""
    monkeypatch.setattr("strata.core.page.MAX_TOKEN_LENGTH", 10**6)
    token = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    for decode in (lambda: decode_position(token, FIELDS), lambda: decode_page_token(token, "x")):
        with pytest.raises(InvalidInput):
            decode()


def test_the_deepest_token_under_the_cap_is_bad_input() -> None:
    token = base64.urlsafe_b64encode(b"[" * 768).decode()
    assert len(token) <= MAX_TOKEN_LENGTH
    for decode in (lambda: decode_position(token, FIELDS), lambda: decode_page_token(token, "x")):
        with pytest.raises(InvalidInput):
            decode()
