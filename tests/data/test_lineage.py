"""Transforms and lineage: parents, code digests, git commits, graphs up and down."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from strata.core.code import function_code, git_commit
from strata.core.errors import InvalidInput
from strata.data.embedded import EmbeddedData


def _double(orders: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    merged = orders.merge(prices, on="item")
    return merged.assign(total=merged.qty * merged.price)


def _repo_commit() -> str | None:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def test_python_and_sql_transforms_record_parents_and_code(data: EmbeddedData) -> None:
    orders = data.ingest(pd.DataFrame({"item": ["a", "b", "a"], "qty": [1, 2, 3]}), "orders")
    prices = data.ingest(pd.DataFrame({"item": ["a", "b"], "price": [2.0, 5.0]}), "prices")
    out = data.transform(["orders", "prices@latest"], fn=_double, output="totals", run_id="r1")
    v = data.get_version("totals")
    assert v.parents == [orders.ref, prices.ref] and v.run_id == "r1"
    assert data.read_pandas("totals")["total"].tolist() == [2.0, 10.0, 6.0]
    t = data.get_transform(v.transform_id or "")
    _, code, _ = function_code(_double)
    assert t.kind == "python" and t.name == "_double" and "merged.qty" in t.code
    assert t.code_digest == hashlib.sha256(code.encode()).hexdigest()
    assert t.git_commit == _repo_commit() and t.inputs == [orders.ref, prices.ref]
    assert t.output == out.ref

    big = data.transform(
        {"t": "totals"},
        sql="SELECT item, sum(total) AS s FROM t GROUP BY item ORDER BY item",
        output="by_item",
    )
    assert data.read_pandas("by_item").to_dict("list") == {"item": ["a", "b"], "s": [8.0, 10.0]}
    assert data.get_transform(data.get_version("by_item").transform_id or "").kind == "sql"

    up = data.lineage("by_item", direction="up", depth=5)
    ids = {n.id for n in up.nodes}
    assert {
        f"version:{orders.ref}",
        f"version:{prices.ref}",
        f"version:{out.ref}",
        "run:r1",
        "dataset:orders",
    } <= ids
    kinds = {(e.source.split(":")[0], e.target.split(":")[0], e.kind) for e in up.edges}
    assert ("version", "transform", "input") in kinds
    assert ("transform", "version", "output") in kinds
    assert ("run", "version", "produced") in kinds
    shallow = data.lineage("by_item", depth=1)
    assert f"version:{orders.ref}" not in {n.id for n in shallow.nodes}

    down = data.lineage("orders", direction="down", depth=3)
    assert f"version:{big.ref}" in {n.id for n in down.nodes}
    with pytest.raises(InvalidInput, match="direction"):
        data.lineage("orders", direction="sideways")


def test_transform_errors(data: EmbeddedData) -> None:
    data.ingest(pd.DataFrame({"a": [1]}), "src")
    with pytest.raises(InvalidInput, match="exactly one"):
        data.transform(["src"], output="x")
    with pytest.raises(InvalidInput, match=r"Transform SQL failed.*views named 'src'"):
        data.transform(["src"], sql="SELECT * FROM missing_table", output="x")
    with pytest.raises(InvalidInput, match="returned int"):
        data.transform(["src"], fn=lambda src: 5, output="x")
    assert [d.name for d in data.list_datasets()] == ["src"]


def test_git_commit_outside_a_repository(tmp_path: Path) -> None:
    assert git_commit(str(tmp_path)) is None
    name, code, _ = function_code(lambda x: x)
    assert name.endswith("<lambda>") and code
