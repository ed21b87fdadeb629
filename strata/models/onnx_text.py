"""ONNX export of a sentence-transformers model: the network as a graph, the tokenizer as data.

The graph is the model's own module chain (transformer → pooling → normalize, whatever
``modules.json`` lists) exported by torch.onnx's TorchScript exporter with free batch and
sequence dimensions: ``input_ids`` and ``attention_mask`` (int64) in, ``embedding``
(float32, ``[rows, dimension]``) out. Tokenizing stays outside the graph (standard ONNX has
no tokenizer operators): :class:`strata.models.flavors.onnx.OnnxPredictor` reads the model
directory's ``tokenizer.json`` with the ``tokenizers`` library (a JSON file, no code) and
pads and truncates as sentence-transformers does (``max_seq_length``, lower-casing when the
model's transformer module does it). Padding is masked, so batching cannot move a vector.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from strata.core.errors import InvalidInput
from strata.models.flavors.base import require
from strata.models.models import Signature

TOKENIZER = "tokenizer.json"


def tokenizer_file(root: Path, model_dir: str) -> str:
    """The ``tokenizer.json`` of the saved model (relative to the model's root): the
    shallowest one under its sentence-transformers directory."""
    found = sorted((root / model_dir).rglob(TOKENIZER), key=lambda p: (len(p.parts), p.as_posix()))
    if not found:
        raise InvalidInput(
            f"This sentence-transformers model has no {TOKENIZER} (a fast tokenizer's file): "
            "the ONNX export tokenizes with it outside the graph, so it cannot be exported",
            details={"flavor": "sentence_transformers", "file": TOKENIZER},
        )
    return found[0].relative_to(root).as_posix()


def export(predictor: Any, signature: Signature, root: Path, model_dir: str, opset: int) -> Any:
    """``(proto, options)``: the graph and the OnnxPredictor options that feed it text."""
    torch = require("torch")
    import onnx

    st = predictor.model
    if len(signature.inputs) != 1:
        raise InvalidInput(
            "A sentence-transformers model takes one text column; this signature has "
            f"{len(signature.inputs)}",
            details={"field": "signature"},
        )
    first = st[0]
    max_length = int(getattr(st, "max_seq_length", None) or 512)
    lowercase = bool(getattr(first, "do_lower_case", False))

    class Encoder(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self, chain: Any) -> None:
            super().__init__()
            self.chain = chain

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            return self.chain(features)["sentence_embedding"]

    encoder = Encoder(st).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
            (ids, mask),
            buf,
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "rows", 1: "tokens"},
                "attention_mask": {0: "rows", 1: "tokens"},
                "embedding": {0: "rows"},
            },
            opset_version=opset,
        )
    proto = onnx.load_from_string(buf.getvalue())
    options = {
        "feed": "text",
        "column": signature.inputs[0].name,
        "tokenizer": tokenizer_file(root, model_dir),
        "max_length": max_length,
        "lowercase": lowercase,
        "batch_size": int(getattr(predictor, "batch_size", 32)),
        "outputs": {"value": "embedding"},
    }
    return proto, options


class TextFeed:
    """Sentences → padded ``input_ids`` / ``attention_mask`` batches, as the graph wants."""

    def __init__(self, root: Path, options: dict[str, Any]) -> None:
        require("tokenizers", "models")
        from tokenizers import Tokenizer

        path = root / str(options["tokenizer"])
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(int(options.get("max_length", 512)))
        pad = self.tokenizer.padding or {}
        self.tokenizer.enable_padding(
            pad_id=int(pad.get("pad_id", 0)), pad_token=str(pad.get("pad_token", "[PAD]"))
        )
        self.column = str(options["column"])
        self.lowercase = bool(options.get("lowercase", False))
        self.batch_size = int(options.get("batch_size", 32))

    def sentences(self, x: Any) -> list[str]:
        import numpy as np

        texts = x[self.column] if isinstance(x, dict) else x
        out = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        return [t.lower() for t in out] if self.lowercase else out

    def batches(self, x: Any) -> Any:
        """``(feed, rows)`` per batch of ``batch_size`` sentences."""
        import numpy as np

        sentences = self.sentences(x)
        for start in range(0, len(sentences), self.batch_size):
            encoded = self.tokenizer.encode_batch(sentences[start : start + self.batch_size])
            ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
            yield {"input_ids": ids, "attention_mask": mask}
