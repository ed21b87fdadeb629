"""The PyTorch flavor: TorchScript and state_dict round trips, trust, ONNX export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import strata.models as sm
from strata.core.errors import DigestMismatch, InvalidInput, PermissionDenied

Iris = tuple[pd.DataFrame, Any]


class OneLayer(torch.nn.Module):
    """A 1-layer net; importable as tests.models.test_pytorch:OneLayer."""

    def __init__(self, n_in: int = 4, n_out: int = 3) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=1)


class Unscriptable(torch.nn.Module):
    """forward takes **kwargs, which TorchScript cannot compile."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, **extra: Any) -> torch.Tensor:
        return self.linear(x)


def _net(seed: int = 0, **kwargs: int) -> OneLayer:
    torch.manual_seed(seed)
    return OneLayer(**kwargs).eval()


def test_torchscript_round_trip_from_columns_and_tensor(iris: Iris, tmp_path: Path) -> None:
    X, _ = iris
    net = _net()
    with torch.inference_mode():
        expected = net(torch.from_numpy(X.to_numpy(dtype=np.float32, copy=True))).numpy()
    spec = sm.save(net, tmp_path / "cols", input_example=X.head(4))
    assert spec.flavor == "pytorch" and spec.flavors["pytorch"].serialization == "torchscript"
    assert any(r.startswith("torch==") for r in spec.requirements)
    model = sm.load(tmp_path / "cols")
    assert np.array_equal(model.predict(X), expected)  # identical, not merely close
    assert np.array_equal(model.predict_arrays({c: X[c].to_numpy() for c in X.columns}), expected)
    matrix = X.to_numpy(dtype=np.float32)
    sm.save(net, tmp_path / "tensor", input_example=matrix[:3])
    model = sm.load(tmp_path / "tensor")
    sig = model.signature
    assert sig is not None and sig.is_tensor and sig.inputs[0].shape == [-1, 4]
    assert sig.outputs[0].shape == [-1, 3]
    assert np.array_equal(model.predict(matrix), expected)
    with pytest.raises(InvalidInput, match="shape"):
        model.predict(matrix[:, :3])


def test_state_dict_needs_trust_because_it_imports_the_class(iris: Iris, tmp_path: Path) -> None:
    X, _ = iris
    net = _net(seed=1, n_in=4, n_out=2)
    spec = sm.save(
        net,
        tmp_path / "m",
        input_example=X.head(3),
        serialization="state_dict",
        flavor_options={"init_kwargs": {"n_in": 4, "n_out": 2}},
    )
    options = spec.flavors["pytorch"].options
    assert options["class"] == f"{OneLayer.__module__}:OneLayer"
    assert spec.flavors["pytorch"].path == "model.safetensors"
    with pytest.raises(PermissionDenied, match="OneLayer"):
        sm.load(tmp_path / "m")
    model = sm.load(tmp_path / "m", trusted=True)
    with torch.inference_mode():
        expected = net(torch.from_numpy(X.to_numpy(dtype=np.float32, copy=True))).numpy()
    assert np.array_equal(model.predict(X), expected)


def test_save_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="state_dict"):
        sm.save(Unscriptable(), tmp_path / "a")

    class Local(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(InvalidInput, match="defined in a function"):
        sm.save(Local(), tmp_path / "b", serialization="state_dict")
    with pytest.raises(InvalidInput, match="init_kwargs must hold JSON"):
        sm.save(
            _net(),
            tmp_path / "c",
            serialization="state_dict",
            flavor_options={"init_kwargs": {"n_in": object()}},
        )
    with pytest.raises(InvalidInput, match="apply to serialization='state_dict' only"):
        sm.save(_net(), tmp_path / "d", flavor_options={"init_kwargs": {}})
    assert not any(tmp_path.iterdir())


def test_tampered_weights_refuse_to_load(iris: Iris, tmp_path: Path) -> None:
    X, _ = iris
    sm.save(_net(), tmp_path / "m", input_example=X.head(2))
    sm.clear_cache()
    data = bytearray((tmp_path / "m" / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "m" / "model.pt").write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match=r"model\.pt"):
        sm.load(tmp_path / "m")


def test_onnx_export_of_a_torch_net_passes_parity(iris: Iris, tmp_path: Path) -> None:
    X, _ = iris
    net = _net()
    sm.save(net, tmp_path / "m", input_example=X.head(5))
    spec = sm.export_onnx(tmp_path / "m", quantize=True)
    parity = spec.onnx_parity
    assert parity is not None and parity.max_abs_diff < 1e-5
    assert parity.quantized is not None and parity.quantized.quantized_nodes > 0
    model = sm.load(tmp_path / "m")
    native = model.predict(X)
    assert np.allclose(model.predict(X, runtime="onnx"), native, atol=1e-5)
    # INT8 weights move a softmax a little, never wildly
    assert np.abs(model.predict(X, runtime="onnx-int8") - native).max() < 0.05
