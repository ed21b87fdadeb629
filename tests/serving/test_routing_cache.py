"""The response cache and the fallback's store of good answers (``routing._Cache``): LRU
order, TTL expiry, kept until evicted without a TTL, made anew when the policy changes."""

from __future__ import annotations

import time

import numpy as np

from strata.serving.routing import Outcome, Router, _Cache, input_digest


def _outcome(value: float) -> Outcome:
    return Outcome(served=None, prediction=value, path="primary", checked={})  # type: ignore[arg-type]


def test_least_recently_used_is_evicted_first() -> None:
    cache = _Cache(2, None)
    cache.put(b"a", _outcome(1))
    cache.put(b"b", _outcome(2))
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", _outcome(3))
    assert cache.get(b"b") is None
    assert [cache.get(k).prediction for k in (b"a", b"c")] == [1, 3]  # type: ignore[union-attr]


def test_entries_expire_after_their_ttl() -> None:
    cache = _Cache(10, 0.2)
    cache.put(b"a", _outcome(1))
    assert cache.get(b"a") is not None
    time.sleep(0.25)
    assert cache.get(b"a") is None and not cache.items  # dropped, not only hidden


def test_without_a_ttl_entries_stay_until_evicted() -> None:
    cache = _Cache(10, None)
    cache.put(b"a", _outcome(1))
    assert cache.items[b"a"][0] == float("inf")


def test_a_changed_size_or_ttl_makes_the_cache_anew() -> None:
    caches: dict[str, _Cache] = {}
    first = Router._cache(caches, "ep", 10, 60.0)
    first.put(b"a", _outcome(1))
    assert Router._cache(caches, "ep", 10, 60.0) is first
    smaller = Router._cache(caches, "ep", 2, 60.0)
    assert smaller is not first and smaller.max_entries == 2 and not smaller.items
    assert Router._cache(caches, "ep", 2, 5.0) is not smaller


def test_the_digest_tells_inputs_apart_by_name_and_value() -> None:
    x = {"a": np.array([1.0, 2.0])}
    assert input_digest(x) == input_digest({"a": np.array([1.0, 2.0])})
    assert input_digest(x) != input_digest({"b": np.array([1.0, 2.0])})
    assert input_digest(x) != input_digest({"a": np.array([1.0, 3.0])})
    assert input_digest({"a": np.zeros((2, 2))}) != input_digest({"a": np.zeros(4)})
    assert input_digest({"a": np.zeros(2)}) != input_digest({"a": np.zeros(2, dtype=np.int64)})
    texts = {"a": np.array(["x", None], dtype=object)}
    assert input_digest(texts) != input_digest({"a": np.array(["x", "None"], dtype=object)})
