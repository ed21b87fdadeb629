"""The Open Inference Protocol v2 (Triton, KServe) on the wire: JSON tensors and Triton's
binary tensor extension.

A request body is JSON, or — when ``Inference-Header-Content-Length`` is present — that many
bytes of JSON followed by the raw bytes of every input whose ``parameters.binary_data_size``
says so, in input order (little-endian, row-major; ``BYTES`` elements each prefixed by a
4-byte little-endian length). ``tritonclient.http`` sends binary inputs by default and asks
for binary outputs (``binary_data_output``, or ``binary_data`` per requested output).

Inputs map onto a model's signature either one tensor per column (shape ``[n]`` or ``[n, 1]``)
or as one ``[n, k]`` tensor holding the ``k`` columns in signature order.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from strata.core.errors import InvalidInput
from strata.serving.served import Prediction, ServedModel

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")
_BY_KIND = {v.str: k for k, v in DTYPES.items() if k != "BYTES"}


def datatype_of(dtype: str | np.dtype[Any]) -> str:
    """The OIP datatype of a numpy dtype (or a signature's dtype name; ``str`` is BYTES)."""
    if isinstance(dtype, str):
        if dtype == "str":
            return "BYTES"
        dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return "BYTES"
    if dtype.kind == "b":
        return "BOOL"
    return _BY_KIND.get(dtype.newbyteorder("<").str, "FP64")


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[tuple[str, bool]] | None  # requested (name, binary)
    binary_output: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def _bad(message: str, **details: Any) -> InvalidInput:
    return InvalidInput(message, details=details)


def _bytes_elements(raw: bytes, count: int, name: str) -> np.ndarray:
    """``count`` length-prefixed BYTES elements as str (UTF-8, errors replaced). Elements
    of one length (ids, codes: the usual case) are cut with numpy in one pass; others walk
    the prefixes (each element's start depends on the lengths before it)."""
    fixed = _fixed_width(raw, count)
    if fixed is not None:
        return fixed
    out = np.empty(count, dtype=object)
    size = len(raw)
    pos = 0
    for i in range(count):
        if pos + 4 > size:
            raise _bad(f"Input {name!r}: BYTES data ends early", input=name)
        (n,) = _LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + n > size:
            raise _bad(f"Input {name!r}: BYTES data ends early", input=name)
        out[i] = raw[pos : pos + n].decode("utf-8", "replace")
        pos += n
    if pos != size:
        raise _bad(
            f"Input {name!r}: BYTES data holds more than the {count} elements of its shape",
            input=name,
        )
    return out


def _fixed_width(raw: bytes, count: int) -> np.ndarray | None:
    """The elements when all ``count`` have the first one's length and are ASCII (numpy
    decodes them in one pass); else None."""
    if count == 0 or len(raw) < 4:
        return None
    (width,) = _LENGTH.unpack_from(raw, 0)
    stride = 4 + width
    if stride * count != len(raw):
        return None
    table = np.frombuffer(raw, dtype=np.uint8).reshape(count, stride)
    lengths = np.ascontiguousarray(table[:, :4]).view("<u4").ravel()
    if not (lengths == width).all():
        return None
    if width == 0:
        return np.full(count, "", dtype=object)
    if not table[:, -1].all():  # numpy's fixed-width bytes drop trailing NULs: keep them
        return None
    data = np.ascontiguousarray(table[:, 4:])
    if (data >= 0x80).any():  # UTF-8 beyond ASCII: decoded element by element
        return None
    decoded: np.ndarray = data.view(f"S{width}").ravel().astype(f"U{width}").astype(object)
    return decoded


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request from its body (JSON, or JSON + binary tensors); InvalidInput naming
    the input for a malformed one."""
    binary = b""
    if header_length is not None:
        try:
            head_size = int(header_length)
        except ValueError:
            raise _bad("Inference-Header-Content-Length must be an integer") from None
        if not 0 < head_size <= len(body):
            raise _bad("Inference-Header-Content-Length is larger than the body")
        head, binary = body[:head_size], body[head_size:]
    else:
        head = body
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"Malformed JSON in the inference request: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise _bad('An inference request is a JSON object with an "inputs" list', field="inputs")
    params = doc.get("parameters") or {}
    tensors: list[Tensor] = []
    offset = 0
    for i, item in enumerate(doc["inputs"]):
        if not isinstance(item, dict):
            raise _bad(f"inputs[{i}] must be an object", field=f"inputs[{i}]")
        name = str(item.get("name", ""))
        datatype = str(item.get("datatype", ""))
        shape = item.get("shape")
        if datatype not in DTYPES:
            raise _bad(
                f"Input {name!r}: unknown datatype {datatype!r}; expected one of "
                f"{', '.join(DTYPES)}",
                input=name,
                received=datatype,
            )
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise _bad(f"Input {name!r}: shape must be a list of sizes", input=name)
        count = math.prod(shape) if shape else 1
        item_params = item.get("parameters") or {}
        if not isinstance(item_params, dict):
            raise _bad(f"Input {name!r}: parameters must be an object", input=name)
        size = item_params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise _bad(f"Input {name!r}: binary_data_size runs past the body", input=name)
            raw = binary[offset : offset + size]
            offset += size
            if datatype == "BYTES":
                if count * 4 > len(raw):  # each element has a 4-byte length prefix
                    raise _bad(
                        f"Input {name!r}: {len(raw)} bytes cannot hold {count} BYTES elements "
                        f"of shape {shape}",
                        input=name,
                    )
                arr = _bytes_elements(raw, count, name)
            else:
                dtype = DTYPES[datatype]
                if len(raw) != count * dtype.itemsize:
                    raise _bad(
                        f"Input {name!r}: {len(raw)} bytes do not hold shape {shape} of {datatype}",
                        input=name,
                    )
                arr = np.frombuffer(raw, dtype=dtype)
        else:
            data = item.get("data")
            if data is None:
                raise _bad(f"Input {name!r} has no data", input=name)
            try:
                arr = np.asarray(data, dtype=DTYPES[datatype]).reshape(-1)
            except (ValueError, TypeError):
                raise _bad(
                    f"Input {name!r}: data is not {datatype}", input=name, expected=datatype
                ) from None
            if arr.size != count:
                raise _bad(
                    f"Input {name!r}: {arr.size} values do not fill shape {shape}",
                    input=name,
                    expected=shape,
                    received=arr.size,
                )
        tensors.append(Tensor(name, datatype, shape, arr.reshape(shape) if shape else arr))
    outputs = None
    if isinstance(doc.get("outputs"), list):
        outputs = []
        for o in doc["outputs"]:
            if not isinstance(o, dict):
                continue
            o_params = o.get("parameters") or {}
            if not isinstance(o_params, dict):
                raise _bad("outputs[].parameters must be an object", field="outputs")
            outputs.append((str(o.get("name", "")), bool(o_params.get("binary_data"))))
    return InferRequest(
        id=str(doc["id"]) if doc.get("id") is not None else None,
        inputs=tensors,
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output")) if isinstance(params, dict) else False,
        parameters=params if isinstance(params, dict) else {},
    )


def to_columns(served: ServedModel, tensors: list[Tensor]) -> dict[str, np.ndarray]:
    """The request's tensors as the model's named inputs: one tensor per column, or one
    ``[n, k]`` tensor of the ``k`` columns in signature order."""
    names = served.input_names
    signature = served.signature
    if signature is not None and signature.is_tensor:
        return {t.name: t.array for t in tensors}
    if len(tensors) == 1 and tensors[0].array.ndim == 2 and tensors[0].name not in names:
        matrix = tensors[0].array
        if matrix.shape[1] != len(names):
            raise _bad(
                f"Input {tensors[0].name!r} of shape {list(matrix.shape)} does not hold the "
                f"model's {len(names)} columns ({', '.join(names)})",
                input=tensors[0].name,
                expected=[-1, len(names)],
                received=list(matrix.shape),
            )
        return {n: matrix[:, i] for i, n in enumerate(names)}
    cols: dict[str, np.ndarray] = {}
    for t in tensors:
        arr = t.array
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        cols[t.name] = arr
    return cols


def _output_arrays(served: ServedModel, pred: Prediction) -> list[tuple[str, np.ndarray]]:
    signature = served.signature
    names = [o.name for o in signature.outputs] if signature is not None else ["prediction"]
    if pred.proba is not None:
        label_name = names[0] if names else "label"
        proba_name = names[1] if len(names) > 1 else "probabilities"
        return [(label_name, pred.prediction), (proba_name, pred.proba)]
    return [(names[0] if names else "prediction", pred.prediction)]


def _bytes_payload(arr: np.ndarray) -> bytes:
    parts = []
    for v in arr.reshape(-1).tolist():
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(len(b).to_bytes(4, "little") + b)
    return b"".join(parts)


def render_infer(
    served: ServedModel, pred: Prediction, req: InferRequest, request_id: str
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary outputs when asked for)."""
    arrays = _output_arrays(served, pred)
    if req.outputs:
        wanted = dict(req.outputs)
        known = [n for n, _ in arrays]
        for name in wanted:
            if name not in known:
                raise _bad(
                    f"Unknown output {name!r}; the model returns {', '.join(known)}",
                    output=name,
                    expected=known,
                )
        arrays = [(n, a) for n, a in arrays if n in wanted]
        binary_of = wanted
    else:
        binary_of = {n: req.binary_output for n, _ in arrays}
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, arr in arrays:
        datatype = datatype_of(arr.dtype)
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary_of.get(name):
            raw = (
                _bytes_payload(arr)
                if datatype == "BYTES"
                else np.ascontiguousarray(arr, dtype=DTYPES[datatype]).tobytes()
            )
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = arr.reshape(-1).tolist()
        outputs.append(out)
    doc = {
        "model_name": served.name,
        "model_version": served.version,
        "id": req.id if req.id is not None else request_id,
        "outputs": outputs,
    }
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


def model_metadata(served: ServedModel) -> dict[str, Any]:
    """``GET /v2/models/{m}[/versions/{v}]``: inputs per column (``[-1]``), outputs."""
    signature = served.signature
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    if signature is not None:
        for s in signature.inputs:
            shape = s.shape if s.shape is not None else [-1]
            inputs.append({"name": s.name, "datatype": datatype_of(s.dtype), "shape": shape})
        for s in signature.outputs:
            shape = s.shape if s.shape is not None else [-1]
            outputs.append({"name": s.name, "datatype": datatype_of(s.dtype), "shape": shape})
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": f"strata_{served.model.flavor}",
        "inputs": inputs,
        "outputs": outputs,
    }
