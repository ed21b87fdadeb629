"""The python_function flavor: stored code, artifacts, config; trust on save and load."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

import strata.models as sm
from strata.core.errors import DigestMismatch, InvalidInput, PermissionDenied

USER_CODE = '''
import json
from pathlib import Path

import numpy as np

from weights_helper import scale


class DelayModel:
    """Predicts a delay from distance with weights read from an artifact."""

    def load(self, context):
        self.weights = json.loads(Path(context.artifacts["weights"]).read_text())
        self.offset = context.model_config["offset"]

    def predict(self, context, inputs):
        w = self.weights
        return scale(inputs["distance"].to_numpy() * w["a"] + w["b"] + self.offset)
'''


def _user_module(tmp_path: Path) -> ModuleType:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "delay_model.py").write_text(USER_CODE)
    (src / "weights_helper.py").write_text("def scale(x):\n    return x * 2.0\n")
    sys.path.insert(0, str(src))
    try:
        spec = importlib.util.spec_from_file_location("delay_model", src / "delay_model.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["delay_model"] = module  # as an import would
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("weights_helper", None)
    return module


def _save(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    module = _user_module(tmp_path)
    (tmp_path / "weights.json").write_text('{"a": 0.5, "b": 3.0}')
    frame = pd.DataFrame({"distance": [100.0, 250.0, 1400.0]})
    sm.save(
        module.DelayModel(),
        tmp_path / "m",
        input_example=frame,
        trusted=True,
        flavor_options={
            "artifacts": {"weights": str(tmp_path / "weights.json")},
            "code_paths": [str(tmp_path / "src" / "weights_helper.py")],
            "model_config": {"offset": 1.0},
        },
    )
    return tmp_path / "m", frame


def test_round_trip_runs_the_stored_code_with_its_artifacts(tmp_path: Path) -> None:
    path, frame = _save(tmp_path)
    spec = sm.load(path, trusted=True).spec
    assert spec.flavor == "python_function"
    assert {"code/delay_model.py", "code/lib/weights_helper.py"} <= set(spec.files)
    assert "artifacts/weights/weights.json" in spec.files
    # the source tree is gone: the model runs from what it stored
    for f in (tmp_path / "src").iterdir():
        f.unlink()
    (tmp_path / "weights.json").unlink()
    sm.clear_cache()
    model = sm.load(path, trusted=True)
    expected = (frame["distance"].to_numpy() * 0.5 + 3.0 + 1.0) * 2.0
    assert np.array_equal(model.predict(frame), expected)
    assert np.array_equal(model.predict_arrays({"distance": np.array([100.0])}), expected[:1])
    with pytest.raises(InvalidInput, match="'distance'"):
        model.predict(pd.DataFrame({"dist": [1.0]}))


def test_loading_and_saving_code_need_trust(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    sm.clear_cache()
    with pytest.raises(PermissionDenied, match="runs the Python code stored with it"):
        sm.load(path)
    module = _user_module(tmp_path / "again")
    with pytest.raises(PermissionDenied, match="trusted=True"):
        sm.save(module.DelayModel(), tmp_path / "n")
    assert not (tmp_path / "n").exists()


def test_changed_code_refuses_to_load(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    code = path / "code" / "delay_model.py"
    code.write_text(code.read_text() + "\nimport os; os.system('echo pwned')\n")
    sm.clear_cache()
    with pytest.raises(DigestMismatch, match=r"code/delay_model\.py"):
        sm.load(path, trusted=True)


def test_bad_options_are_named(tmp_path: Path) -> None:
    module = _user_module(tmp_path)
    with pytest.raises(InvalidInput, match=r"flavor_options\.artifacts"):
        sm.save(
            module.DelayModel(),
            tmp_path / "a",
            trusted=True,
            flavor_options={"artifacts": {"weights": str(tmp_path / "missing.json")}},
        )
    with pytest.raises(InvalidInput, match="model_config must hold JSON"):
        sm.save(
            module.DelayModel(),
            tmp_path / "b",
            trusted=True,
            flavor_options={"model_config": {"f": object()}},
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
