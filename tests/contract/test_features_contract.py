"""The feature-store contract: the same tests on the embedded and the remote client (SQLite
and PostgreSQL metadata). Small tables built to hit the point-in-time rules one by one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from strata.client import Client
from strata.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied, StrataError
from strata.features.models import OnlineStatus

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _exactly(cls: type[StrataError], fn: object, *args: object, **kw: object) -> StrataError:
    assert callable(fn)
    with pytest.raises(StrataError) as info:
        fn(*args, **kw)
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    return info.value


DEFS = {
    "entities": [
        {"name": "station", "join_keys": ["station"]},
        {"name": "car", "join_keys": ["car_id"], "value_types": {"car_id": "int64"}},
    ],
    "feature_views": [
        {
            "name": "air",
            "entities": ["station"],
            "source": "air_raw@latest",
            "timestamp": "ts",
            "created_timestamp": "created",
            "ttl": "2h",
            "features": {"temp": "float64", "ok": "bool"},
            "owner": "ops",
            "tags": {"team": "weather"},
            "description": "air readings",
        },
        {
            "name": "cars",
            "entities": ["car"],
            "source": "cars_raw",
            "features": [{"name": "seats", "dtype": "int64", "description": "seat count"}],
        },
    ],
    "feature_services": [{"name": "trip", "features": ["air:temp", "cars:seats"]}],
}


def _load(client: Client) -> None:
    air = pd.DataFrame(
        {
            "station": ["A", "A", "A", "A", "B"],
            "ts": [h(0), h(1), h(1), h(5), h(0)],
            # two rows at h(1): the later created one (temp 12) wins
            "created": [h(0), h(1), h(1.5), h(5), h(0)],
            "temp": [10.0, 11.0, 12.0, 15.0, 20.0],
            "ok": [True, True, False, True, True],
        }
    )
    client.data.ingest(air, "air_raw")
    client.data.ingest(pd.DataFrame({"car_id": [1, 2], "seats": [4, 7]}), "cars_raw")


def test_apply_plan_and_registry(client: Client) -> None:
    _load(client)
    fs = client.features
    planned = fs.plan(DEFS)
    assert {(c.kind, c.name, c.action) for c in planned.changes} == {
        ("entity", "station", "add"),
        ("entity", "car", "add"),
        ("feature_view", "air", "add"),
        ("feature_view", "cars", "add"),
        ("feature_service", "trip", "add"),
    }
    assert fs.list_feature_views() == []  # plan writes nothing
    assert fs.apply(DEFS).applied
    assert [r.name for r in fs.list_feature_views()] == ["air", "cars"]
    assert fs.get_feature_view("air").ttl == timedelta(hours=2)
    assert fs.get_entity("car").join_keys == ["car_id"]
    assert fs.get_feature_service("trip").features == ["air:temp", "cars:seats"]
    assert {c.action for c in fs.plan(DEFS).changes} == {"unchanged"}

    changed = {
        **DEFS,
        "feature_views": [{**DEFS["feature_views"][0], "ttl": "3h"}, DEFS["feature_views"][1]],
    }
    diff = {c.name: c for c in fs.plan(changed).changes}
    assert diff["air"].action == "change" and diff["air"].diffs == ["ttl: '2h' -> '3h'"]
    assert not diff["air"].breaking
    fs.apply(changed)
    assert fs.list_feature_views()[0].version == 2

    retyped = {
        **DEFS,
        "feature_views": [
            DEFS["feature_views"][0],
            {**DEFS["feature_views"][1], "features": {"seats": "float64"}},
        ],
    }
    err = _exactly(Conflict, fs.apply, retyped)
    assert "cars" in err.message and "force" in err.message
    assert fs.get_feature_view("cars").features[0].dtype.value == "int64"  # nothing applied
    fs.apply(retyped, force=True)
    assert fs.get_feature_view("cars").features[0].dtype.value == "float64"

    found = fs.search_features("air")
    assert [f["ref"] for f in found] == ["air:temp", "air:ok"]
    assert [f["ref"] for f in fs.search_features(tag="team=weather")] == ["air:temp", "air:ok"]
    assert [f["ref"] for f in fs.search_features("seat")] == ["cars:seats"]
    assert fs.search_features(owner="nobody") == []

    nf = _exactly(NotFound, fs.get_feature_view, "aire")
    assert "air" in nf.message  # close names


def test_apply_refuses_misconfiguration(client: Client) -> None:
    _load(client)
    fs = client.features

    def view(**changes: object) -> dict[str, object]:
        return {
            **DEFS,
            "feature_views": [{**DEFS["feature_views"][0], **changes}],
            "feature_services": [],
        }

    for changes, words in [
        ({"timestamp": "nope"}, "timestamp column 'nope'"),
        ({"timestamp": "temp"}, "not a timestamp"),
        ({"features": {"temperature": "float64"}}, "feature 'temperature'"),
        ({"features": {"temp": "int64"}}, "declared int64"),
        ({"source": "missing_ds"}, "does not exist"),
        ({"ttl": "soon"}, "ttl"),
        ({"ttl": "-1h"}, "ttl"),
        ({"entities": ["nobody"]}, "entity 'nobody'"),
    ]:
        err = _exactly(InvalidInput, fs.apply, view(**changes))
        assert words in err.message, (changes, err.message)
    assert fs.list_feature_views() == []


def test_point_in_time_rules(client: Client) -> None:
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    entities = pd.DataFrame(
        {
            "station": ["A", "A", "A", "A", "B", "C", "A"],
            "car_id": [1, 2, 1, 3, 2, 1, 1],
            "event_timestamp": [h(-1), h(0.5), h(1), h(4), h(1), h(1), h(1)],
            "label": ["before", "first", "tie", "stale", "b", "none", "dup"],
        }
    )
    out = fs.get_historical_features(entities, "trip").to_pandas()
    assert list(out.columns) == ["station", "car_id", "event_timestamp", "label", "temp", "seats"]
    assert out["label"].tolist() == entities["label"].tolist()  # order, duplicates kept
    temps = out["temp"].tolist()
    assert pd.isna(temps[0])  # nothing at or before the row's time
    assert temps[1] == 10.0  # latest at or before h(0.5)
    assert temps[2] == 12.0 and temps[6] == 12.0  # the tie goes to the later created row
    assert pd.isna(temps[3])  # latest is h(1), 3 h old: outside the 2 h TTL
    assert temps[4] == 20.0
    assert pd.isna(temps[5])  # unknown station: kept, with nulls
    assert out["seats"].tolist()[:3] == [4, 7, 4] and pd.isna(out["seats"][3])

    full = fs.get_historical_features(entities, ["air:*"], full_feature_names=True)
    assert full.column_names[-2:] == ["air__temp", "air__ok"]


def test_timestamps_must_be_aware(client: Client) -> None:
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    naive = pd.DataFrame({"station": ["A"], "event_timestamp": [datetime(2024, 1, 1, 1)]})
    if client.is_remote:  # JSON carries the text: no offset is the same mistake
        err = _exactly(InvalidInput, fs.get_historical_features, naive, ["air:temp"])
        assert "assume_utc" in err.message
    else:
        err = _exactly(InvalidInput, fs.get_historical_features, naive, ["air:temp"])
        assert "naive" in err.message and "assume_utc" in err.message
    ok = fs.get_historical_features(naive, ["air:temp"], assume_utc=True)
    assert ok.column("temp").to_pylist() == [12.0]
    missing = pd.DataFrame({"station": ["A"]})
    err = _exactly(InvalidInput, fs.get_historical_features, missing, ["air:temp"])
    assert "event_timestamp" in err.message
    no_key = pd.DataFrame({"event_timestamp": [h(1)]})
    err = _exactly(InvalidInput, fs.get_historical_features, no_key, ["air:temp"])
    assert "'station'" in err.message
    err = _exactly(NotFound, fs.get_historical_features, missing, ["air:tmp"])
    assert "temp" in err.message


def test_training_set_lineage(client: Client) -> None:
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    entities = pd.DataFrame(
        {"station": ["A", "B"], "car_id": [1, 2], "event_timestamp": [h(1), h(1)]}
    )
    client.data.ingest(entities, "trips")
    result = fs.create_training_set("trips@latest", "trip", "trip_training")
    version = client.data.get_version(result.ref or "")
    assert version.rows == 2
    parents = set(version.parents)
    assert client.data.get_version("trips").ref in parents
    assert client.data.get_version("air_raw").ref in parents
    assert client.data.get_version("cars_raw").ref in parents
    table = client.data.read_arrow(version.ref)
    assert table.column("temp").to_pylist() == [12.0, 20.0]
    # the training set names the feature service's exact version (model version -> service)
    code = json.loads(client.data.get_transform(version.transform_id or "").code)
    (service,) = [r for r in fs.list_feature_services() if r.name == "trip"]
    assert code["feature_service"] == {"name": "trip", "version": service.version}


def test_retrievals_in_a_row_each_see_their_own_entities_and_sources(client: Client) -> None:
    """Embedded retrievals keep one DuckDB connection per thread between calls: rows of an
    earlier call (a frame, then a dataset's view) and an earlier source version never leak
    into the next answer."""
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    first = pd.DataFrame({"station": ["A"], "car_id": [1], "event_timestamp": [h(1)]})
    client.data.ingest(
        pd.DataFrame({"station": ["B", "A"], "car_id": [2, 1], "event_timestamp": [h(1), h(5)]}),
        "trips",
    )
    third = pd.DataFrame({"station": ["B"], "car_id": [2], "event_timestamp": [h(1)]})
    answers = [
        fs.get_historical_features(e, ["air:temp"]).column("temp").to_pylist()
        for e in (first, "trips@latest", third, first)
    ]
    assert answers == [[12.0], [20.0, 15.0], [20.0], [12.0]]
    # a new version of the source is read by the next call
    air = client.data.read_pandas("air_raw@latest")
    air.loc[air["temp"] == 12.0, "temp"] = 13.0
    client.data.ingest(air, "air_raw")
    assert fs.get_historical_features(first, ["air:temp"]).column("temp").to_pylist() == [13.0]


def test_online_materialize_push_and_skew(client: Client) -> None:
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    seen: list[tuple[str, int]] = []
    done = {r.view: r for r in fs.materialize(None, h(100), progress=lambda *a: seen.append(a))}
    assert done["air"].rows == 2 and done["cars"].rows == 2  # latest per key
    # Each view's rows are reported as written: a running total per view (once per batch
    # embedded, how many batches DuckDB hands over varies), ending at the view's rows.
    for view in ("air", "cars"):
        totals = [rows for v, rows in seen if v == view]
        assert totals and totals == sorted(totals) and totals[-1] == 2, seen
    assert {v for v, _ in seen} == {"air", "cars"}
    rows = [
        {"station": "A", "car_id": 1},
        {"station": "B", "car_id": 2},
        {"station": "Z", "car_id": 9},
    ]
    got = fs.get_online_features("trip", rows)
    assert got.features == ["air:temp", "cars:seats"]
    a, b, z = got.values
    assert a["cars:seats"].value == 4 and a["cars:seats"].status is OnlineStatus.PRESENT
    assert b["cars:seats"].value == 7
    assert z["air:temp"].status is OnlineStatus.MISSING and z["cars:seats"].value is None
    # Readings from 2024 are far outside a 2 h TTL now: the status says so, the value is hidden
    assert a["air:temp"].status is OnlineStatus.OUTSIDE_TTL and a["air:temp"].value is None
    assert a["air:temp"].event_ts == h(5)
    # the same answer as columns, one entry per entity row in order
    seats = got.columns["cars:seats"]
    assert seats.values == [4, 7, None] and seats.event_ts[2] is None
    assert seats.status == [OnlineStatus.PRESENT, OnlineStatus.PRESENT, OnlineStatus.MISSING]
    assert got.columns["air:temp"].status[0] is OnlineStatus.OUTSIDE_TTL

    now = datetime.now(UTC).replace(microsecond=0)
    assert fs.push("air", [{"station": "A", "ts": now.isoformat(), "temp": 30.5, "ok": False}]) == 1
    fresh = fs.get_online_features(["air:temp", "air:ok"], [{"station": "A"}]).values[0]
    assert fresh["air:temp"].value == 30.5 and fresh["air:ok"].value is False
    assert fresh["air:temp"].status is OnlineStatus.PRESENT and fresh["air:temp"].event_ts == now
    # an older push never replaces a newer value
    fs.push("air", [{"station": "A", "ts": (now - timedelta(hours=1)).isoformat(), "temp": 1.0}])
    assert (
        fs.get_online_features(["air:temp"], [{"station": "A"}]).values[0]["air:temp"].value == 30.5
    )

    bad = _exactly(
        InvalidInput, fs.push, "air", [{"station": "A", "ts": now.isoformat(), "temp": "hot"}]
    )
    assert "temp" in bad.message and "float64" in bad.message
    bad = _exactly(InvalidInput, fs.push, "air", [{"ts": now.isoformat(), "temp": 1.0}])
    assert "station" in bad.message
    bad = _exactly(InvalidInput, fs.get_online_features, ["air:temp"], [{"car_id": 1}])
    assert "station" in bad.message
    _exactly(NotFound, fs.get_online_features, ["nope:temp"], [{"station": "A"}])

    # skew check: offline at "now" equals online after materializing up to now
    fs.materialize(None, now + timedelta(seconds=1))
    entity = pd.DataFrame({"station": ["A", "B"], "car_id": [1, 2], "event_timestamp": [now, now]})
    offline = fs.get_historical_features(entity, ["cars:seats"]).column("seats").to_pylist()
    online = [
        v["cars:seats"].value
        for v in fs.get_online_features(
            ["cars:seats"], entity[["station", "car_id"]].to_dict("records")
        ).values
    ]
    assert offline == online == [4, 7]


def test_incremental_materialization(client: Client) -> None:
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    first = fs.materialize(h(0), h(2), ["air"])[0]
    assert first.rows == 2  # A@h1 and B@h0
    second = fs.materialize_incremental(h(10), ["air"])[0]
    assert second.start == h(2) and second.rows == 1  # only A@h5 is new
    _exactly(InvalidInput, fs.materialize, h(3), h(2), ["air"])


def test_rest_definitions_are_never_a_server_path(tmp_path: Path, client: Client) -> None:
    """An editor sends a path as the definitions: the server must not open it."""
    if not client.is_remote:
        pytest.skip("the REST boundary; embedded callers read their own files")
    secret = tmp_path / "server-secret.yaml"
    secret.write_text(yaml.safe_dump(DEFS))
    http = client.features.http  # type: ignore[attr-defined]
    for attempt in (str(secret), f"'{secret}'"):
        with pytest.raises(InvalidInput, match="must be a mapping"):
            http.request("POST", "/api/v1/features/plan", json={"definitions": attempt})
    assert client.features.list_feature_views() == []


ON_DEMAND = {
    **DEFS,
    "on_demand_views": [
        {
            "name": "trip_calc",
            "sources": ["air:temp", "cars:seats"],
            "request": {"riders": "int64"},
            "features": {
                "per_seat": {"dtype": "float64", "sql": "riders / nullif(seats, 0)"},
                "warm": {"dtype": "bool", "sql": "temp > 11"},
            },
            "description": "computed per trip",
        }
    ],
    "feature_services": [{"name": "trip", "features": ["air:temp", "trip_calc:*"]}],
}


def test_on_demand_views_offline_and_online_agree(client: Client) -> None:
    _load(client)
    fs = client.features
    planned = {(c.kind, c.name): c.action for c in fs.plan(ON_DEMAND).changes}
    assert planned[("on_demand_view", "trip_calc")] == "add"
    fs.apply(ON_DEMAND)
    assert [r.name for r in fs.list_on_demand_views()] == ["trip_calc"]
    assert fs.get_on_demand_view("trip_calc").request == {"riders": "int64"}
    assert {f["ref"] for f in fs.search_features(entity="car")} >= {
        "cars:seats",
        "trip_calc:per_seat",
    }

    entities = pd.DataFrame(
        {
            "station": ["A", "B", "C"],
            "car_id": [1, 2, 9],
            "riders": [2, 7, 3],
            "event_timestamp": [h(1), h(1), h(1)],
        }
    )
    # the service names trip_calc:*, which reads cars:seats without asking for it: the
    # hidden source feature is used, not returned
    out = fs.get_historical_features(entities, "trip")
    assert out.column_names == [
        "station",
        "car_id",
        "riders",
        "event_timestamp",
        "temp",
        "per_seat",
        "warm",
    ]
    assert out.column("per_seat").to_pylist() == [0.5, 1.0, None]
    assert out.column("warm").to_pylist() == [True, True, None]
    full = fs.get_historical_features(entities, ["trip_calc:per_seat"], full_feature_names=True)
    assert full.column_names[-1] == "trip_calc__per_seat"
    assert full.column("trip_calc__per_seat").to_pylist() == [0.5, 1.0, None]

    client.data.ingest(entities, "rides")
    stored = fs.create_training_set("rides@latest", "trip", "rides_training")
    table = client.data.read_arrow(stored.ref or "")
    assert table.column("per_seat").to_pylist() == [0.5, 1.0, None]
    assert "seats" not in table.column_names

    # online: the same expressions over the online values and the request fields
    now = datetime.now(UTC).replace(microsecond=0)
    fs.materialize(None, now)
    fs.push("air", [{"station": "A", "ts": now.isoformat(), "temp": 30.0, "ok": True}])
    rows = [{"station": "A", "car_id": 1, "riders": 2}, {"station": "Z", "car_id": 2, "riders": 7}]
    got = fs.get_online_features("trip", rows)
    assert got.features == ["air:temp", "trip_calc:per_seat", "trip_calc:warm"]
    assert "cars:seats" not in got.columns  # hidden source feature
    assert got.columns["trip_calc:per_seat"].values == [0.5, 1.0]
    assert got.columns["trip_calc:warm"].values == [True, None]
    assert got.columns["trip_calc:per_seat"].status == [OnlineStatus.PRESENT] * 2
    # station Z has no air reading: warm's source is missing, and its status says so
    assert got.columns["trip_calc:warm"].status == [OnlineStatus.PRESENT, OnlineStatus.MISSING]
    assert got.columns["trip_calc:warm"].event_ts[0] == now

    # skew check: offline at "now" equals online (per_seat reads what both sides hold; the
    # pushed air reading exists online only)
    entity = pd.DataFrame(
        {"station": ["A", "B"], "car_id": [1, 2], "riders": [2, 7], "event_timestamp": [now] * 2}
    )
    offline = fs.get_historical_features(entity, ["trip_calc:per_seat"]).column("per_seat")
    online = fs.get_online_features(
        ["trip_calc:per_seat"], entity.drop(columns="event_timestamp").to_dict("records")
    )
    assert offline.to_pylist() == online.columns["trip_calc:per_seat"].values == [0.5, 1.0]

    err = _exactly(
        InvalidInput,
        fs.get_online_features,
        ["trip_calc:per_seat"],
        [{"station": "A", "car_id": 1}],
    )
    assert "riders" in err.message
    err = _exactly(
        InvalidInput,
        fs.get_historical_features,
        entities.drop(columns="riders"),
        ["trip_calc:per_seat"],
    )
    assert "riders" in err.message
    nf = _exactly(NotFound, fs.get_online_features, ["trip_calc:nope"], rows)
    assert "per_seat" in nf.message


def test_on_demand_views_are_checked_at_apply(client: Client) -> None:
    _load(client)
    fs = client.features

    def odv(**changes: object) -> dict[str, object]:
        base = ON_DEMAND["on_demand_views"][0]  # type: ignore[index]
        return {**ON_DEMAND, "on_demand_views": [{**base, **changes}], "feature_services": []}

    for changes, words in [
        ({"features": {"x": {"sql": "nope + 1"}}}, "Unknown"),
        ({"features": {"x": {"sql": "(SELECT 1)"}}}, "subqueries"),
        ({"features": {"x": {"sql": "1; DROP TABLE t"}}}, "not a valid SQL expression"),
        ({"features": {"x": {"sql": "riders FROM read_csv('/etc/passwd')"}}}, "one scalar"),
        ({"features": {"x": {"sql": "date_part('year', temp)"}}}, "could not be evaluated"),
        ({"sources": ["air:nope"]}, "no feature 'nope'"),
        ({"sources": ["ghost:temp"]}, "not a feature view"),
        ({"request": {"temp": "float64"}}, "two inputs are called 'temp'"),
        ({"features": {"x": {"dtype": "float64"}}}, "no sql expression"),
        ({"python": "os:system"}, "not both"),
    ]:
        err = _exactly(InvalidInput, fs.apply, odv(**changes))
        assert words in err.message, (changes, err.message)
    assert fs.list_on_demand_views() == []  # nothing applied


def test_python_on_demand_views_run_only_trusted_code(client: Client) -> None:
    _load(client)
    fs = client.features
    base = ON_DEMAND["on_demand_views"][0]  # type: ignore[index]
    defs = {
        **ON_DEMAND,
        "on_demand_views": [
            {
                **base,
                "python": "strata_test_udfs:per_seat",
                "features": {"per_seat": "float64"},
            }
        ],
        "feature_services": [],
    }
    fs.apply(defs)  # registering names the code; it does not import it
    entities = pd.DataFrame(
        {"station": ["A"], "car_id": [1], "riders": [2], "event_timestamp": [h(1)]}
    )
    err = _exactly(PermissionDenied, fs.get_historical_features, entities, ["trip_calc:per_seat"])
    assert "STRATA_TRUSTED_MODULES=strata_test_udfs" in err.message


def test_feature_statistics(client: Client) -> None:
    _load(client)
    fs = client.features
    fs.apply(DEFS)
    stats = fs.get_feature_statistics("air")
    assert stats.view == "air" and stats.rows == 5
    assert stats.source_version == client.data.get_version("air_raw").ref
    by_name = {c["name"]: c for c in stats.columns}
    assert list(by_name) == ["station", "ts", "temp", "ok"]  # keys, event time, features
    assert by_name["temp"]["min"] == 10.0 and by_name["temp"]["max"] == 20.0
    assert by_name["temp"]["mean"] == pytest.approx(13.6)
    assert by_name["station"]["distinct"] == 2
    _exactly(NotFound, fs.get_feature_statistics, "nope")


def test_sql_sources(client: Client) -> None:
    _load(client)
    client.data.ingest(pd.DataFrame({"station": ["A", "B"], "offset": [100.0, 200.0]}), "offsets")
    fs = client.features
    sql_view = {
        "name": "air_adj",
        "entities": ["station"],
        "source": {
            "sql": "SELECT a.station, a.ts, a.created, a.temp + o.offset AS temp_adj "
            "FROM air a JOIN o USING (station)",
            "inputs": {"air": "air_raw@latest", "o": "offsets"},
        },
        "timestamp": "ts",
        "created_timestamp": "created",
        "ttl": "2h",
        "features": {"temp_adj": "float64"},
    }
    defs = {**DEFS, "feature_views": [*DEFS["feature_views"], sql_view]}
    fs.apply(defs)
    assert fs.get_feature_view("air_adj").source.inputs == {  # type: ignore[union-attr]
        "air": "air_raw@latest",
        "o": "offsets",
    }
    entities = pd.DataFrame({"station": ["A", "B", "A"], "event_timestamp": [h(1), h(1), h(4)]})
    out = fs.get_historical_features(entities, ["air_adj:temp_adj", "air:temp"])
    assert out.column("temp_adj").to_pylist() == [112.0, 220.0, None]  # the tie, B, stale
    assert out.column("temp").to_pylist() == [12.0, 20.0, None]

    client.data.ingest(entities, "adj_rows")
    stored = fs.create_training_set("adj_rows@latest", ["air_adj:temp_adj"], "adj_training")
    parents = set(client.data.get_version(stored.ref or "").parents)
    assert client.data.get_version("air_raw").ref in parents  # both inputs of the SQL
    assert client.data.get_version("offsets").ref in parents

    done = {r.view: r for r in fs.materialize(None, h(100), ["air_adj"])}
    assert done["air_adj"].rows == 2 and "o=offsets@" in done["air_adj"].source_version
    got = fs.get_online_features(["air_adj:temp_adj"], [{"station": "B"}])
    assert got.columns["air_adj:temp_adj"].event_ts[0] == h(0)

    err = _exactly(InvalidInput, fs.get_feature_statistics, "air_adj")
    assert "offsets" in err.message  # its inputs' profiles are the statistics

    for source, words in [
        ({**sql_view["source"], "sql": "COPY air TO '/tmp/x.csv'"}, "exactly one SELECT"),
        ({**sql_view["source"], "sql": "SELECT * FROM read_csv('/etc/passwd')"}, "source SQL"),
        ({**sql_view["source"], "inputs": {"air": "missing@latest"}}, "does not exist"),
        ({**sql_view["source"], "sql": "SELECT station, ts, created FROM air"}, "temp_adj"),
    ]:
        bad = {**DEFS, "feature_views": [*DEFS["feature_views"], {**sql_view, "source": source}]}
        err = _exactly(InvalidInput, fs.apply, bad)
        assert words in err.message, (source, err.message)


def test_data_query_is_sandboxed(client: Client, tmp_path: Path) -> None:
    _load(client)
    table = client.data.query(
        "SELECT station, max(temp) AS hottest FROM a GROUP BY station ORDER BY station",
        {"a": "air_raw@latest"},
    )
    assert table.to_pylist() == [
        {"station": "A", "hottest": 15.0},
        {"station": "B", "hottest": 20.0},
    ]
    assert client.data.query("SELECT * FROM a", {"a": "air_raw"}, limit=0).num_rows == 0
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n1\n")
    for sql in (
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM '{secret}'",
        "SELECT * FROM a; SELECT 1",
        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
    ):
        _exactly(InvalidInput, client.data.query, sql, {"a": "air_raw"})
    assert not (tmp_path / "out.csv").exists()
