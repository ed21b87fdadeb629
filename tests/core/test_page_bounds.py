"""Page tokens carry positions a database BIGINT can hold: a forged larger one is bad input
(400), never an out-of-range error from the database (500)."""

from __future__ import annotations

import pytest

from strata.core.errors import InvalidInput
from strata.core.page import MAX_POSITION, decode_page_token, encode_page_token


def test_positions_are_bounded() -> None:
    assert (
        decode_page_token(encode_page_token("after_seq", MAX_POSITION), "after_seq") == MAX_POSITION
    )
    for bad in (MAX_POSITION + 1, 2888576596079719305049014272, -1):
        with pytest.raises(InvalidInput):
            decode_page_token(encode_page_token("after_seq", bad), "after_seq")
