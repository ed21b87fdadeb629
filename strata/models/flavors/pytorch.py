"""PyTorch modules: TorchScript by default, or a state_dict plus an importable class.

- ``torchscript`` (``model.pt``): the module compiled by ``torch.jit.script`` (or a module
  already scripted or traced by the caller) and saved with ``torch.jit.save``. Loading runs
  no Python code: torch rebuilds the graph and its tensors itself, and the TorchScript
  program runs inside torch's interpreter when predicting. No ``trusted`` needed.
- ``state_dict`` (``model.safetensors``): the weights as safetensors (pure data) plus the
  class as ``module:QualName`` and its ``init_kwargs`` (``flavor_options``). Loading
  *imports that module and calls the class*: that runs code found on the loading machine's
  ``sys.path`` under that name, so it needs ``trusted=True``; use it for modules that do not
  script, from packages you install yourself.

Predictions run under ``torch.no_grad`` on CPU with the input cast to the module's
parameter dtype (float32 usually): a matrix of the signature's columns, or its tensor.
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput
from strata.models.flavors.base import (
    Flavor,
    Predictor,
    dist_version,
    loaded,
    refuse_untrusted,
    require,
)
from strata.models.models import FlavorSpec, Signature

_FILES = {"torchscript": "model.pt", "state_dict": "model.safetensors"}


class TorchPredictor(Predictor):
    def __init__(self, module: Any) -> None:
        torch = require("torch", "torch")
        self.module = module.eval()
        param = next(iter(module.parameters()), None)
        self.dtype = param.dtype if param is not None else torch.float32
        self._np_dtype = torch.empty(0, dtype=self.dtype).numpy().dtype
        self._torch = torch

    def predict(self, x: Any) -> np.ndarray:
        torch = self._torch
        # a writable C-contiguous array in the module's dtype (copied only when needed):
        # torch warns about read-only buffers, which pandas' copy-on-write hands out
        tensor = torch.from_numpy(np.require(x, dtype=self._np_dtype, requirements=["C", "W"]))
        with torch.no_grad():  # not inference_mode: its tensors break a later ONNX export
            out = self.module(tensor)
        if isinstance(out, tuple | list):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise InvalidInput(
                f"The PyTorch module returned a {type(out).__name__}; Strata predicts with "
                f"modules whose forward returns a tensor",
                details={"received": type(out).__name__},
            )
        return np.asarray(out.detach().cpu().numpy())


def _class_path(obj: Any) -> str:
    cls = type(obj)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise InvalidInput(
            f"Cannot save {cls.__qualname__} as a state_dict: the class is defined in "
            f"{'a function' if '<locals>' in cls.__qualname__ else 'the __main__ script'}, so "
            f"nothing can import it when the model loads. Move it into a module, or save the "
            f"module as TorchScript (the default)",
            details={"class": cls.__qualname__},
        )
    return f"{cls.__module__}:{cls.__qualname__}"


class PyTorchFlavor(Flavor):
    name = "pytorch"
    saves = "PyTorch nn.Module (TorchScript, or state_dict + class)"
    packages = ("torch", "safetensors", "numpy")
    option_names = ("init_kwargs",)

    def handles(self, obj: Any) -> bool:
        torch = loaded("torch")
        return torch is not None and isinstance(obj, torch.nn.Module)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        torch = require("torch", "torch")
        fmt = serialization or "torchscript"
        if fmt not in _FILES:
            raise InvalidInput(
                f"Unknown serialization {fmt!r} for PyTorch; expected torchscript or state_dict",
                details={"field": "serialization"},
            )
        opts: dict[str, Any] = {}
        if fmt == "torchscript":
            if options:
                raise InvalidInput(
                    "flavor_options init_kwargs apply to serialization='state_dict' only",
                    details={"field": "flavor_options"},
                )
            scripted = obj if isinstance(obj, torch.jit.ScriptModule) else _script(torch, obj)
            torch.jit.save(scripted, str(directory / _FILES[fmt]))
        else:
            from safetensors.torch import save_file

            init_kwargs = dict(options.get("init_kwargs") or {})
            try:
                json.dumps(init_kwargs)
            except TypeError as exc:
                raise InvalidInput(
                    f"flavor_options.init_kwargs must hold JSON values (numbers, text, lists, "
                    f"mappings): {exc}",
                    details={"field": "flavor_options.init_kwargs"},
                ) from None
            state = {k: v.detach().cpu().contiguous() for k, v in obj.state_dict().items()}
            save_file(state, str(directory / _FILES[fmt]))
            opts = {"class": _class_path(obj), "init_kwargs": init_kwargs}
        return FlavorSpec(
            path=_FILES[fmt],
            serialization=fmt,
            library_version=dist_version("torch") or "unknown",
            options=opts,
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        torch = require("torch", "torch")
        path = directory / spec.path
        if spec.serialization == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")
        elif spec.serialization == "state_dict":
            module = _build(spec, trusted)
            from safetensors.torch import load_file

            module.load_state_dict(load_file(str(path), device="cpu"), strict=True)
        else:
            raise InvalidInput(
                f"strata-model.yaml: flavors.pytorch.serialization: unknown value "
                f"{spec.serialization!r}; expected torchscript or state_dict",
                details={"key": "flavors.pytorch.serialization"},
            )
        return TorchPredictor(module)


def _script(torch: Any, obj: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(obj)
    except Exception as exc:  # torch raises many classes for what TorchScript lacks
        raise InvalidInput(
            f"Cannot compile {type(obj).__qualname__} to TorchScript "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]}). Pass a traced module "
            f"(torch.jit.trace(model, example)), or save it with serialization='state_dict' "
            f"and flavor_options={{'init_kwargs': ...}}",
            details={"field": "serialization"},
        ) from None


def _build(spec: FlavorSpec, trusted: bool) -> Any:
    target = str(spec.options.get("class", ""))
    if not trusted:
        raise refuse_untrusted(
            f"a PyTorch state_dict model (class {target})", "an importable class", "load"
        )
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise InvalidInput(
            f"strata-model.yaml: flavors.pytorch.options.class: {target!r} is not "
            f"'module:ClassName'",
            details={"key": "flavors.pytorch.options.class"},
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"Cannot import {target} to rebuild the PyTorch model ({exc}); install the "
            f"package that defines it",
            details={"key": "flavors.pytorch.options.class"},
        ) from None
    return obj(**dict(spec.options.get("init_kwargs") or {}))


def to_onnx(predictor: TorchPredictor, signature: Signature, opset: int) -> Any:
    """The module as an ONNX graph with a free row dimension (torch.onnx's TorchScript
    exporter: the torch.export one needs onnxscript)."""
    torch = predictor._torch
    import onnx

    if signature.is_tensor:
        shape = [2 if d == -1 else d for d in (signature.inputs[0].shape or [-1])]
    else:
        shape = [2, len(signature.inputs)]
    example = torch.zeros(*shape, dtype=predictor.dtype)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            predictor.module,
            (example,),
            buf,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "rows"}, "output": {0: "rows"}},
            opset_version=opset,
        )
    return onnx.load_from_string(buf.getvalue())
