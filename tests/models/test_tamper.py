"""A tampered model directory refuses to load, naming the file or the yaml key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

import strata.models as sm
from strata.core.errors import DigestMismatch, InvalidInput

SPEC = "strata-model.yaml"


@pytest.fixture
def saved(iris: tuple[pd.DataFrame, Any], tmp_path: Path) -> Path:
    X, y = iris
    sm.save(LogisticRegression(max_iter=300).fit(X, y), tmp_path / "m", input_example=X.head(2))
    return tmp_path / "m"


def _edit_yaml(path: Path, change: Any) -> None:
    doc = yaml.safe_load((path / SPEC).read_text())
    change(doc)
    (path / SPEC).write_text(yaml.safe_dump(doc))


def test_changed_file_same_size(saved: Path) -> None:
    data = bytearray((saved / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / "model.skops").write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match=r"'model.skops' changed .*sha256") as err:
        sm.load(saved)
    assert err.value.details == {"file": "model.skops", "problem": "changed"}


def test_changed_example_file(saved: Path) -> None:
    (saved / "input_example.json").write_text("{}")
    with pytest.raises(DigestMismatch, match=r"'input_example.json' changed"):
        sm.load(saved)


def test_missing_file(saved: Path) -> None:
    (saved / "model.skops").unlink()
    with pytest.raises(
        DigestMismatch, match=r"'model.skops' listed in strata-model.yaml is missing"
    ):
        sm.load(saved)


def test_extra_file(saved: Path) -> None:
    (saved / "sub").mkdir()
    (saved / "sub" / "payload.py").write_text("import os")
    with pytest.raises(DigestMismatch, match=r"'sub/payload.py' .* is not listed"):
        sm.load(saved)


def test_symlink_is_refused(saved: Path, tmp_path: Path) -> None:
    (saved / "model.skops").rename(tmp_path / "elsewhere")
    (saved / "model.skops").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DigestMismatch, match=r"'model.skops' is a link"):
        sm.load(saved)


def test_digest_edited_in_yaml_to_match_a_swapped_file_points_at_a_file_not_listed(
    saved: Path,
) -> None:
    def point_elsewhere(doc: dict[str, Any]) -> None:
        doc["flavors"]["sklearn"]["path"] = "../../etc/passwd"

    _edit_yaml(saved, point_elsewhere)
    with pytest.raises(InvalidInput, match=r"flavors.sklearn.path: '../../etc/passwd' is not"):
        sm.load(saved)


@pytest.mark.parametrize("version", [2, "1", None])
def test_unknown_format_version(saved: Path, version: Any) -> None:
    _edit_yaml(saved, lambda doc: doc.__setitem__("format_version", version))
    with pytest.raises(InvalidInput, match=r"strata-model.yaml: format_version: .* not a format"):
        sm.load(saved)


def test_corrupt_yaml_names_the_line(saved: Path) -> None:
    text = (saved / SPEC).read_text()
    (saved / SPEC).write_text(text.replace("flavors:", "flavors: [", 1))
    with pytest.raises(InvalidInput, match=r"not valid YAML at line \d+"):
        sm.load(saved)


def test_wrong_value_names_the_key(saved: Path) -> None:
    _edit_yaml(saved, lambda doc: doc["files"]["model.skops"].__setitem__("size", -1))
    with pytest.raises(InvalidInput, match=r"files\.model\.skops\.size: ") as err:
        sm.load(saved)
    assert err.value.details["key"] == "files.model.skops.size"


def test_unknown_key_is_named(saved: Path) -> None:
    _edit_yaml(saved, lambda doc: doc.__setitem__("loader_hook", "os.system"))
    with pytest.raises(InvalidInput, match=r"loader_hook: unknown key"):
        sm.load(saved)


def test_unknown_flavor_is_named(saved: Path) -> None:
    def rename(doc: dict[str, Any]) -> None:
        doc["flavors"] = {"cloudpickle": doc["flavors"]["sklearn"]}

    _edit_yaml(saved, rename)
    with pytest.raises(InvalidInput, match=r"flavors.cloudpickle: unknown flavor"):
        sm.load(saved)
