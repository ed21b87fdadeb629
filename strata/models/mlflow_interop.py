"""MLflow model directories in and out, without importing mlflow.

``import_mlflow(PATH, DEST)`` reads an MLflow model (``MLmodel`` with a sklearn, lightgbm,
xgboost or python_function flavor) and saves it in Strata's format: skops files are read with
the same type checks as Strata's own (foreign types need ``trusted=True``), pickle/cloudpickle
files only with ``trusted=True``, XGBoost's UBJSON as data. A ``python_function``-only model
(a ``python_model.pkl`` of user code) needs ``trusted=True`` and becomes a Strata
``python_function`` model run by :class:`strata.models.mlflow_pyfunc.MlflowPythonModel`, its
artifacts and code directory carried over.

``export_mlflow(URI, PATH)`` writes an MLflow 3 model directory (``MLmodel``, the flavor's
file, ``requirements.txt``) that ``mlflow.pyfunc.load_model`` loads: scikit-learn as
skops and LightGBM as its model text (what MLflow 3 writes itself), XGBoost as UBJSON of the
Booster (so ``pyfunc.predict`` of a classifier returns MLflow's Booster output:
probabilities). Any other flavor (python_function, PyTorch, sentence-transformers) is
exported whole under ``strata_model/`` with a small ``loader_module`` in ``code/`` that
loads it through ``strata.models.load`` (so strata-ml must be installed where MLflow loads it).
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from strata.core.errors import AlreadyExists, InvalidInput, NotFound
from strata.models.flavors.base import refuse_untrusted, require
from strata.models.flavors.sklearn import import_skops, load_skops
from strata.models.models import ModelSpec
from strata.models.store import save
from strata.models.tracked import load

SUPPORTED = ("sklearn", "lightgbm", "xgboost")
NATIVE_EXPORTS = ("sklearn", "lightgbm", "xgboost")


def _mlmodel(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load((path / "MLmodel").read_text())
    except FileNotFoundError:
        raise NotFound(
            f"No MLflow model at {path}: it has no MLmodel file", details={"path": str(path)}
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}/MLmodel is not valid YAML: {exc}", details={"key": None})
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        raise InvalidInput(f"{path}/MLmodel has no 'flavors' mapping", details={"key": "flavors"})
    return doc


def _inside(root: Path, rel: Any, key: str) -> Path:
    if not isinstance(rel, str) or rel.startswith("/") or ".." in Path(rel).parts:
        raise InvalidInput(
            f"MLmodel: {key}: {rel!r} is not a relative path inside the model", details={"key": key}
        )
    return root / rel


def _read_object(root: Path, name: str, conf: dict[str, Any], trusted: bool) -> Any:
    fmt = str(conf.get("serialization_format", "cloudpickle"))
    if name == "xgboost":
        xgb = require("xgboost")
        file = _inside(root, conf.get("data"), "flavors.xgboost.data")
        cls = {
            "xgboost.sklearn.XGBClassifier": xgb.XGBClassifier,
            "xgboost.sklearn.XGBRegressor": xgb.XGBRegressor,
        }.get(str(conf.get("model_class")), xgb.Booster)
        obj = cls()
        obj.load_model(str(file))
        return obj
    key = "pickled_model" if name == "sklearn" else "data"
    file = _inside(root, conf.get(key), f"flavors.{name}.{key}")
    if name == "lightgbm" and conf.get("model_class") == "lightgbm.basic.Booster":
        return require("lightgbm").Booster(model_file=str(file))  # MLflow writes its text
    if fmt == "skops":
        return load_skops(file, file.name, trusted=trusted)
    if not trusted:
        raise refuse_untrusted(f"the MLflow {name} model {file.name}", fmt, "import")
    cloudpickle = require("cloudpickle")
    with file.open("rb") as fh:
        return cloudpickle.load(fh)


def import_mlflow(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    trusted: bool = False,
) -> ModelSpec:
    """Save the MLflow model at ``path`` as a Strata model at ``dest``; its MLflow input
    example (when it has one) is not carried over, so pass the result through ``save`` with
    an example to get a signature."""
    root = Path(path)
    doc = _mlmodel(root)
    flavors: dict[str, Any] = doc["flavors"]
    name = next((f for f in SUPPORTED if f in flavors), None)
    pyfunc = flavors.get("python_function")
    if name is None and isinstance(pyfunc, dict) and pyfunc.get("python_model"):
        return _import_pyfunc(root, pyfunc, dest, doc, trusted)
    if name is None:
        raise InvalidInput(
            f"{root}/MLmodel has flavors {', '.join(map(str, flavors))}; Strata imports "
            f"{', '.join(SUPPORTED)} and python_function models with a python_model",
            details={"flavors": list(map(str, flavors))},
        )
    obj = _read_object(root, name, dict(flavors[name] or {}), trusted)
    return save(obj, dest, run_id=doc.get("run_id"))


def _import_pyfunc(
    root: Path,
    conf: dict[str, Any],
    dest: str | os.PathLike[str],
    doc: dict[str, Any],
    trusted: bool,
) -> ModelSpec:
    from strata.models.mlflow_pyfunc import MlflowPythonModel

    pickled = _inside(root, conf.get("python_model"), "flavors.python_function.python_model")
    if pickled.suffix == ".py":
        raise InvalidInput(
            f"{root}/MLmodel: a models-from-code python_model ({pickled.name}) is not imported; "
            f"save the class with strata.models.save(obj, path, trusted=True) instead",
            details={"key": "flavors.python_function.python_model"},
        )
    if not trusted:
        raise refuse_untrusted(
            f"the MLflow python_function model {pickled.name}", "cloudpickle", "import"
        )
    artifacts = {"python_model": str(pickled)}
    names = []
    for art, entry in dict(conf.get("artifacts") or {}).items():
        rel = entry.get("path") if isinstance(entry, dict) else entry
        artifacts[str(art)] = str(_inside(root, rel, f"flavors.python_function.artifacts.{art}"))
        names.append(str(art))
    code_paths = []
    if conf.get("code"):
        code_dir = _inside(root, conf["code"], "flavors.python_function.code")
        code_paths = [str(p) for p in sorted(code_dir.iterdir()) if p.name != "__pycache__"]
    return save(
        MlflowPythonModel(),
        dest,
        trusted=True,
        run_id=doc.get("run_id"),
        flavor_options={
            "artifacts": artifacts,
            "code_paths": code_paths,
            "model_config": {
                "mlflow_artifacts": names,
                "mlflow_model_config": conf.get("model_config") or {},
            },
        },
    )


def export_mlflow(
    uri: str | os.PathLike[str], path: str | os.PathLike[str], *, trusted: bool = False
) -> Path:
    """Write the Strata model at ``uri`` as an MLflow model directory at ``path`` (which must
    not exist; it appears atomically). Returns ``path``."""
    model = load(uri, trusted=trusted)
    dest = Path(path)
    if dest.exists():
        raise AlreadyExists(
            f"Cannot export to {dest}: it exists already", details={"path": str(dest)}
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.exporting-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        if model.flavor in NATIVE_EXPORTS:
            flavors = _write_flavor(model.flavor, model.predictor, tmp)
        else:
            flavors = _write_strata_loader(model.path, tmp)
        flavors["python_function"]["python_version"] = model.spec.python_version
        doc = {
            "flavors": flavors,
            "model_uuid": uuid.uuid4().hex,
            "run_id": model.spec.run_id,
            "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
        (tmp / "MLmodel").write_text(yaml.safe_dump(doc, sort_keys=False))
        (tmp / "requirements.txt").write_text("\n".join(model.spec.requirements) + "\n")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _write_strata_loader(model_dir: Path, out: Path) -> dict[str, dict[str, Any]]:
    from strata.models.mlflow_pyfunc import LOADER

    shutil.copytree(model_dir, out / "strata_model")
    (out / "code").mkdir()
    (out / "code" / "strata_mlflow_loader.py").write_text(LOADER)
    return {
        "python_function": {
            "code": "code",
            "data": "strata_model",
            "loader_module": "strata_mlflow_loader",
        }
    }


def _write_flavor(flavor: str, predictor: Any, out: Path) -> dict[str, dict[str, Any]]:
    if flavor == "xgboost":
        predictor.booster.save_model(str(out / "model.ubj"))
        return {
            "python_function": {"data": "model.ubj", "loader_module": "mlflow.xgboost"},
            "xgboost": {
                "code": None,
                "data": "model.ubj",
                "model_class": "xgboost.core.Booster",
                "model_format": "ubj",
            },
        }
    if flavor == "lightgbm":
        predictor.booster.save_model(str(out / "model.lgb"))  # MLflow's Booster: model text
        return {
            "lightgbm": {
                "code": None,
                "data": "model.lgb",
                "model_class": "lightgbm.basic.Booster",
                "serialization_format": "skops",
            },
            "python_function": {"data": "model.lgb", "loader_module": "mlflow.lightgbm"},
        }
    sio = import_skops()
    sio.dump(predictor.estimator, out / "model.skops")
    return {
        "python_function": {
            "loader_module": "mlflow.sklearn",
            "model_path": "model.skops",
            "predict_fn": "predict",
        },
        "sklearn": {
            "code": None,
            "pickled_model": "model.skops",
            "serialization_format": "skops",
            "skops_trusted_types": sio.get_untrusted_types(file=out / "model.skops") or None,
        },
    }
