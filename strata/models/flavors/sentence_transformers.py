"""sentence-transformers models, as the library's own directory (``model/``).

``SentenceTransformer.save`` writes its modules' configs, the tokenizer and the weights as
safetensors: data. Two things in such a directory could run code when it loads, and both
need ``trusted=True``:

- ``modules.json`` names the class of every module and the library *imports* it: a type from
  outside ``sentence_transformers.`` (a custom module) is refused, named;
- weights in a pickle-based file (``*.bin``, ``*.pt``, ``*.pkl``) rather than safetensors.

Remote code (``trust_remote_code``) stays off unless ``trusted``. Nothing is downloaded: the
directory is complete, and ``local_files_only`` keeps the hub out of it.

Predictions take one text column and return the embeddings, ``[rows, dimension]`` float32.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from strata.core.errors import InvalidInput, PermissionDenied
from strata.models.flavors.base import Flavor, Predictor, dist_version, loaded, require
from strata.models.models import FlavorSpec

DIRECTORY = "model"
_PICKLED = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_EXTRA = "sentence-transformers"


class SentenceTransformerPredictor(Predictor):
    input_kind = "columns"

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size

    def predict(self, x: Any) -> np.ndarray:
        if isinstance(x, dict):
            if len(x) != 1:
                raise InvalidInput(
                    f"A sentence-transformers model embeds one text column; got {len(x)} "
                    f"({', '.join(x)})",
                    details={"expected": 1, "received": list(x)},
                )
            (texts,) = x.values()
        else:
            texts = x
        sentences = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        out = self.model.encode(
            sentences,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out)


def check_directory(root: Path, *, trusted: bool) -> list[str]:
    """The module types of a sentence-transformers directory; PermissionDenied naming a
    custom module type or a pickle-based weights file unless ``trusted``."""
    try:
        modules = json.loads((root / "modules.json").read_text())
    except FileNotFoundError:
        raise InvalidInput(
            f"{root} is not a sentence-transformers directory: it has no modules.json",
            details={"file": "modules.json"},
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"modules.json is not valid JSON: {exc}", details={"file": "modules.json"}
        ) from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise InvalidInput(
            "modules.json must be a list of modules", details={"file": "modules.json"}
        )
    types = [str(m.get("type", "")) for m in modules]
    if trusted:
        return types
    foreign = [t for t in types if not t.startswith("sentence_transformers.")]
    if foreign:
        raise PermissionDenied(
            f"The sentence-transformers model uses module types from outside the library "
            f"({', '.join(foreign)}); loading imports them, which runs their code. Pass "
            f"trusted=True to load it if you trust its source",
            details={"file": "modules.json", "types": foreign},
        )
    pickled = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in _PICKLED
    )
    if pickled:
        raise PermissionDenied(
            f"The sentence-transformers model holds pickle-based weights ({', '.join(pickled)}) "
            f"rather than safetensors; reading them can run code. Pass trusted=True to load "
            f"it if you trust its source, or save it again with safetensors",
            details={"files": pickled},
        )
    return types


class SentenceTransformersFlavor(Flavor):
    name = "sentence_transformers"
    saves = "sentence-transformers SentenceTransformer"
    packages = ("sentence-transformers", "transformers", "torch", "safetensors", "numpy")
    option_names = ("batch_size",)

    def handles(self, obj: Any) -> bool:
        st = loaded("sentence_transformers")
        return st is not None and isinstance(obj, st.SentenceTransformer)

    def save(
        self,
        obj: Any,
        directory: Path,
        *,
        trusted: bool,
        serialization: str | None,
        options: Mapping[str, Any],
    ) -> FlavorSpec:
        require("sentence_transformers", _EXTRA)
        if serialization not in (None, "sentence-transformers"):
            raise InvalidInput(
                f"sentence-transformers models are saved as the library's own directory "
                f"(sentence-transformers), not {serialization!r}",
                details={"field": "serialization"},
            )
        batch_size = options.get("batch_size", 32)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInput(
                f"flavor_options.batch_size must be a positive integer, got {batch_size!r}",
                details={"field": "flavor_options.batch_size"},
            )
        obj.save(str(directory / DIRECTORY), safe_serialization=True)
        types = check_directory(directory / DIRECTORY, trusted=trusted)
        return FlavorSpec(
            path=DIRECTORY,
            serialization="sentence-transformers",
            library_version=dist_version("sentence-transformers") or "unknown",
            options={
                "modules": types,
                "dimension": obj.get_sentence_embedding_dimension(),
                "batch_size": batch_size,
            },
        )

    def load(self, directory: Path, spec: FlavorSpec, *, trusted: bool) -> Predictor:
        st = require("sentence_transformers", _EXTRA)
        root = directory / spec.path
        check_directory(root, trusted=trusted)
        model = st.SentenceTransformer(
            str(root), device="cpu", local_files_only=True, trust_remote_code=trusted
        )
        return SentenceTransformerPredictor(model, int(spec.options.get("batch_size", 32)))
