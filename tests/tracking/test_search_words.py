"""MLflow's words for a refused search (``mlflow_api/search_words``) on odd input: a wording
never becomes an error of its own (a 400 stays a 400), and a request larger than any worded
is never handed to sqlparse (its time grows with the text). The words themselves are checked
side by side with ``mlflow server`` in test_mlflow_parity.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from strata.tracking.mlflow_api import search_words
from strata.tracking.mlflow_api.search_words import (
    MAX_WORDED_TEXT,
    experiment_search_words,
    page_words,
    run_search_words,
)

_ODD_FILTERS = [
    "run_id IN ({[1]})",  # a set of lists: not hashable
    "run_id IN (" + "-+" * 1500 + "1)",  # nested past the parser's depth
    "experiment_id IN ({{}})",
    "attributes.status IN (" + "(" * 400 + "'a'" + ")" * 400 + ")",
    "\x00 = 1",
]


@pytest.mark.parametrize("odd", _ODD_FILTERS)
def test_odd_filters_are_worded_or_left_alone_never_raised(odd: str) -> None:
    for words in (run_search_words, experiment_search_words):
        got = words(odd, None, None)
        assert got is None or isinstance(got, str)


def test_a_deeply_nested_page_token_is_left_alone() -> None:
    deep = base64.b64encode(b"[" * 700).decode()  # within the token limit
    assert page_words(deep) is None or isinstance(page_words(deep), str)
    assert page_words(base64.b64encode(b"[" * 100_000).decode()) is None  # over it: unread


def test_what_is_larger_than_any_worded_never_reaches_sqlparse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(search_words.sqlparse, "parse", lambda *a: calls.append(a))
    long_filter = "@ " + "a " * MAX_WORDED_TEXT
    assert run_search_words(long_filter, None, None) is None
    assert experiment_search_words(long_filter, None, None) is None
    assert run_search_words(None, ["x"] * 21, None) is None
    assert run_search_words(None, ["a" * (MAX_WORDED_TEXT + 1)], None) is None
    assert calls == []
    run_search_words("metrics.a > 1", None, None)  # within the limits: parsed
    assert len(calls) == 1
