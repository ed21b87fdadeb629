"""A process keeps the last dataset version it read: trials of a study stop re-reading it,
and nothing else changes (the version is still resolved, a new version is read)."""

from __future__ import annotations

import pandas as pd
import pytest

from strata.client import Client
from strata.core.errors import NotFound
from strata.training.dataset import load_table


def test_the_same_version_is_read_once_and_a_new_one_again(home_client: Client) -> None:
    home_client.data.ingest(pd.DataFrame({"a": range(1000)}), "nums")
    first, ref = load_table(home_client.data, "nums@latest", sample=None, seed=1)
    again, ref_again = load_table(home_client.data, ref, sample=None, seed=1)
    assert again is first and ref_again == ref  # no second Parquet scan
    sample, _ = load_table(home_client.data, ref, sample=10, seed=1)
    assert sample.num_rows == 10  # the sample is taken from the kept table
    home_client.data.ingest(pd.DataFrame({"a": range(5)}), "nums")
    newer, newer_ref = load_table(home_client.data, "nums@latest", sample=None, seed=1)
    assert newer_ref != ref and newer.num_rows == 5
    with pytest.raises(NotFound):  # still resolved every time
        load_table(home_client.data, "nums@00000000deadbeef", sample=None, seed=1)
