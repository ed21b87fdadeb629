"""``python_function``: a user class with ``load(context)`` and ``predict(context, inputs)``.

The class's source file is stored with the model (``code/``), with any extra ``code_paths``
and named ``artifacts`` (files or directories the class reads in ``load``, under
``artifacts/``). Loading *executes that stored code*: the class's file runs as a module of
its own (named after its digest, so two models never share one), the extra code is put on
``sys.path`` for its imports, the class is called with no arguments and ``load`` is called
with the context. That is arbitrary code, so ``load`` refuses it without ``trusted=True``;
saving needs ``trusted=True`` too, since the code is copied from the saving machine.

``predict`` receives a pandas DataFrame of the signature's columns (the tensor for a tensor
signature; the caller's input unchanged when the model has no signature), like MLflow's
pyfunc, and returns anything numpy can turn into an array.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import shutil
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput, PermissionDenied
from strata.models.flavors.base import Flavor, Predictor, dist_version
from strata.models.models import FlavorSpec

_lock = threading.Lock()


class PythonModel:
    """Base class for models written as Python code (optional: any class with the two
    methods is accepted)."""

    def load(self, context: PythonModelContext) -> None:
        """Read ``context.artifacts`` (absolute paths) and ``context.model_config``."""

    def predict(self, context: PythonModelContext, inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define predict")


@dataclass(frozen=True)
class PythonModelContext:
    """What ``load`` and ``predict`` receive: artifact paths by name and the model's
    configuration (JSON values given at save time)."""

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)


class PythonFunctionPredictor(Predictor):
    input_kind = "frame"

    def __init__(self, instance: Any, context: PythonModelContext) -> None:
        self.instance = instance
        self.context = context

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(self.instance.predict(self.context, x))


def _is_python_model(obj: Any) -> bool:
    if isinstance(obj, PythonModel):
        return True
    cls = type(obj)
    return callable(getattr(cls, "load", None)) and callable(getattr(cls, "predict", None))


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=False)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


class PythonFunctionFlavor(Flavor):
    name = "python_function"
    saves = "a class with load(context) and predict(context, inputs), trusted=True"
    packages = ("numpy", "pandas")
    option_names = ("artifacts", "code_paths", "model_config")

    def handles(self, obj: Any) -> bool:
        return not isinstance(obj, type) and _is_python_model(obj)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        cls = type(obj)
        if not trusted:
            raise PermissionDenied(
                f"Refusing to save {cls.__qualname__} as a python_function model without "
                f"trusted=True: its code is stored with the model and runs wherever the model "
                f"is loaded (which needs trusted=True too)",
                details={"class": cls.__qualname__, "trusted": False},
            )
        if serialization not in (None, "python"):
            raise InvalidInput(
                f"python_function models store their code (serialization 'python'), not "
                f"{serialization!r}",
                details={"field": "serialization"},
            )
        if "<locals>" in cls.__qualname__:
            raise InvalidInput(
                f"{cls.__qualname__} is defined inside a function; define it at module level "
                f"so its file can be stored and run again",
                details={"class": cls.__qualname__},
            )
        try:
            source = inspect.getsourcefile(cls)
        except (TypeError, OSError):
            source = None
        if source is None or not Path(source).is_file():
            raise InvalidInput(
                f"Cannot find the source file of {cls.__qualname__} (defined interactively?); "
                f"put the class in a .py file",
                details={"class": cls.__qualname__},
            )
        code = directory / "code"
        code.mkdir()
        main_file = f"code/{Path(source).name}"
        _copy(Path(source), directory / main_file)
        extra = []
        for raw in options.get("code_paths") or []:
            path = Path(raw)
            if not path.exists():
                raise InvalidInput(
                    f"flavor_options.code_paths: {raw} does not exist",
                    details={"field": "flavor_options.code_paths"},
                )
            rel = f"code/lib/{path.name}"
            if (directory / rel).exists():
                raise InvalidInput(
                    f"flavor_options.code_paths: two entries are named {path.name}",
                    details={"field": "flavor_options.code_paths"},
                )
            _copy(path, directory / rel)
            extra.append(rel)
        artifacts: dict[str, str] = {}
        for name, raw in dict(options.get("artifacts") or {}).items():
            path = Path(raw)
            if not str(name).isidentifier() or not path.exists():
                raise InvalidInput(
                    f"flavor_options.artifacts: {name!r} must be an identifier naming an "
                    f"existing file or directory (got {raw})",
                    details={"field": f"flavor_options.artifacts.{name}"},
                )
            rel = f"artifacts/{name}/{path.name}"
            _copy(path, directory / rel)
            artifacts[str(name)] = rel
        config = dict(options.get("model_config") or {})
        try:
            json.dumps(config)
        except TypeError as exc:
            raise InvalidInput(
                f"flavor_options.model_config must hold JSON values: {exc}",
                details={"field": "flavor_options.model_config"},
            ) from None
        return FlavorSpec(
            path=main_file,
            serialization="python",
            library_version=dist_version("strata-ml") or "unknown",
            options={
                "class": cls.__qualname__,
                "code_paths": extra,
                "artifacts": artifacts,
                "model_config": config,
            },
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        qualname = str(spec.options.get("class", ""))
        if not trusted:
            raise PermissionDenied(
                f"Refusing to load the python_function model {qualname}: loading runs the "
                f"Python code stored with it ({spec.path}), so anyone who could change the "
                f"model could run code here. Pass trusted=True if you trust its source",
                details={"class": qualname, "trusted": False},
            )
        cls = load_class(directory, spec)
        context = PythonModelContext(
            artifacts={
                k: str((directory / v).resolve())
                for k, v in dict(spec.options.get("artifacts") or {}).items()
            },
            model_config=dict(spec.options.get("model_config") or {}),
        )
        instance = cls()
        instance.load(context)
        return PythonFunctionPredictor(instance, context)


def load_class(directory: Path, spec: FlavorSpec) -> Any:
    """Run the stored class file as its own module and return the class."""
    main = directory / spec.path
    digest = hashlib.sha256(main.read_bytes()).hexdigest()[:16]
    module_name = f"strata_pyfunc_{digest}"
    with _lock:
        for rel in spec.options.get("code_paths") or []:
            lib = str((directory / rel).parent.resolve())
            if lib not in sys.path:
                sys.path.append(lib)  # appended: never shadows installed packages
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, main)
            if loader_spec is None or loader_spec.loader is None:
                raise InvalidInput(
                    f"Cannot import {spec.path}", details={"key": "flavors.python_function.path"}
                )
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
    obj: Any = module
    qualname = str(spec.options.get("class", ""))
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise InvalidInput(
            f"strata-model.yaml: flavors.python_function.options.class: {qualname!r} is not "
            f"defined in {spec.path}",
            details={"key": "flavors.python_function.options.class"},
        ) from None
    return obj
