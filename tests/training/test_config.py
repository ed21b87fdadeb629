"""TrainConfig: one options object, validated once; errors name the key and close matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.core.errors import InvalidInput, NotFound
from strata.training.config import apply_overrides, load_config
from strata.training.models import Family, SplitMethod, Task

from .conftest import base_config, write_config


def test_full_config_parses_and_flattens() -> None:
    cfg = load_config(base_config(task="classification", cv={"folds": 3}, sensitive=["carrier"]))
    assert cfg.model.family is Family.LIGHTGBM and cfg.split.method is SplitMethod.STRATIFIED
    assert cfg.task is Task.CLASSIFICATION and cfg.cv is not None and cfg.cv.folds == 3
    flat = cfg.flat_params()
    assert flat["model.params.n_estimators"] == "20"
    assert flat["target.sql"] == "arr_delay > 15" and flat["split.method"] == "stratified"


def test_target_may_be_a_plain_column() -> None:
    cfg = load_config(base_config(target="arr_delay"))
    assert cfg.target.name == "arr_delay" and cfg.target.sql is None


def test_unknown_top_level_key_names_it_and_close_matches() -> None:
    raw = base_config()
    raw["modle"] = raw.pop("model")
    with pytest.raises(InvalidInput) as err:
        load_config(raw)
    assert "modle" in err.value.message and "did you mean model" in err.value.message
    assert err.value.details["field"] == "modle"
    assert err.value.details["errors"][0]["close_matches"] == ["model"]


def test_unknown_nested_key_names_the_dotted_path() -> None:
    raw = base_config(split={"method": "time", "colum": "time_hour"})
    with pytest.raises(InvalidInput) as err:
        load_config(raw)
    assert err.value.details["field"] == "split.colum"
    assert "did you mean column" in err.value.message


def test_bad_values_are_named() -> None:
    with pytest.raises(InvalidInput, match=r"split.test_size"):
        load_config(base_config(split={"method": "random", "test_size": 1.5}))
    with pytest.raises(InvalidInput, match=r"split.method.*random.*stratified.*time.*group"):
        load_config(base_config(split={"method": "sideways"}))
    with pytest.raises(InvalidInput, match=r"needs split.column"):
        load_config(base_config(split={"method": "group"}))
    with pytest.raises(InvalidInput, match=r"unknown metric 'rocauc'; did you mean roc_auc"):
        load_config(base_config(metrics=["rocauc"]))
    with pytest.raises(InvalidInput, match=r"model.estimator"):
        load_config(base_config(model={"family": "sklearn"}))
    with pytest.raises(InvalidInput, match=r"either 'features' or 'exclude'"):
        load_config(base_config(exclude=["tailnum"]))


def test_set_overrides_use_dotted_paths_and_yaml_scalars(tmp_path: Path) -> None:
    path = write_config(tmp_path / "train.yaml", base_config())
    cfg = load_config(
        path,
        [
            "model.params.n_estimators=50",
            "model.params.learning_rate=0.1",
            "split.method=time",
            "split.column=time_hour",
            "cv.folds=2",
            "target.name=is_late",
            "features=[dep_delay, distance]",
        ],
    )
    assert cfg.model.params == {"n_estimators": 50, "num_leaves": 15, "learning_rate": 0.1}
    assert cfg.split.method is SplitMethod.TIME and cfg.split.column == "time_hour"
    assert cfg.cv is not None and cfg.cv.folds == 2
    assert cfg.target.name == "is_late" and cfg.target.sql == "arr_delay > 15"
    assert cfg.features == ["dep_delay", "distance"]


def test_set_errors_name_the_item() -> None:
    with pytest.raises(InvalidInput, match=r"KEY=VALUE"):
        apply_overrides({}, ["model.params.n_estimators"])
    with pytest.raises(InvalidInput, match=r"seed is int"):
        apply_overrides({"seed": 1}, ["seed.x=2"])
    with pytest.raises(InvalidInput, match=r"unknown key; did you mean params"):
        load_config(base_config(), ["model.parms.x=1"])


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nmodel: [unclosed\n")
    with pytest.raises(InvalidInput, match=r"not valid YAML at line"):
        load_config(bad)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InvalidInput, match=r"must hold a mapping"):
        load_config(tmp_path / "list.yaml")


def test_search_space_errors_name_the_parameter() -> None:
    space = {"model.params.learning_rate": {"type": "float", "low": 0.3, "high": 0.01}}
    with pytest.raises(InvalidInput) as err:
        load_config(base_config(tune={"space": space}))
    assert err.value.details["field"] == "tune.space.model.params.learning_rate"
    assert "'low' (0.3) must be below 'high' (0.01)" in err.value.message
    space = {"model.params.num_leaves": {"type": "int", "low": 0, "high": 10, "log": True}}
    with pytest.raises(InvalidInput, match=r"num_leaves.*log scale needs 'low' > 0"):
        load_config(base_config(tune={"space": space}))
    space = {"model.params.boosting": {"type": "categorical"}}
    with pytest.raises(InvalidInput, match=r"boosting.*non-empty 'choices'"):
        load_config(base_config(tune={"space": space}))
