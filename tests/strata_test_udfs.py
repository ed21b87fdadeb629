"""On-demand feature functions the feature-store tests name as ``strata_test_udfs:...``
(tests/ is on sys.path, so this imports as a top-level module)."""

from __future__ import annotations

import pandas as pd


def per_seat(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"per_seat": inputs["riders"] / inputs["seats"].where(inputs["seats"] != 0)}
    )


def delay_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """Flights: the departure delay in hours and whether it is cold and windy."""
    return pd.DataFrame(
        {
            "delay_hours": inputs["dep_delay"] / 60.0,
            "cold_wind": (inputs["temp"] < 40) & (inputs["wind_speed"] > 10),
        }
    )


def wrong_length(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"delay_hours": [1.0] * (len(inputs) + 1)})
