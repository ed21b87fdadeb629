"""MLflow's checks of names and values on the MLflow surface (``mlflow_api/words.py``)."""

from __future__ import annotations

import pytest

from strata.core.errors import InvalidInput
from strata.tracking.mlflow_api import words


def test_a_refused_long_name_is_not_remembered_as_valid() -> None:
    """Names found valid are remembered (checked once each); one too long is refused and
    never remembered, so requests cannot fill that memory with megabyte names."""
    long = "k" * 5000
    with pytest.raises(InvalidInput, match="maximum length of 250"):
        words.metric_key(long)
    assert long not in words._passed
    with pytest.raises(InvalidInput, match="maximum length of 250"):
        words.metric_key(long)  # refused again, not waved through
    assert words.metric_key("loss") == "loss" and "loss" in words._passed


def test_values_over_the_limits_are_cut_unless_truncation_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert words.param("p", "v" * 7000) == ("p", "v" * 6000)
    assert words.tag("t", "v" * 9000)[1] == "v" * 8000
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    with pytest.raises(InvalidInput, match="'Param value' exceeds the maximum length of 6000"):
        words.param("p", "v" * 7000)
