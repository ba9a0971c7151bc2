"""The KServe v2 inference protocol (REST) as OpenVINO Model Server and Triton speak it, in numpy only.

The one input, ``image``, is ``UINT8 [N, H, W, 3]`` (decoded and resized by the model's preprocessing) or
``BYTES [N]`` (encoded image files, which the server preprocesses), as JSON (``data`` flat or nested; files as
base64 or ``{"b64": ...}``) or with the binary tensor extension: ``Inference-Header-Content-Length`` bytes of
JSON, then the raw tensor (BYTES elements each after a 4-byte little-endian length; one image may come bare, as
OpenVINO Model Server allows). The outputs, ``scores`` ``FP32 [N, 2]`` and ``probability`` ``FP32 [N, 1]``, come
as JSON or binary, with Triton's classification extension on ``scores``. A malformed request raises
``ValueError`` with a one-line reason (HTTP 400).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metadata import INPUT_NAME, OUTPUT_PROBABILITY, OUTPUT_SCORES, ModelInfo, shortest

HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUTS = (OUTPUT_SCORES, OUTPUT_PROBABILITY)  # scores first: OpenVINO Model API reads the first output
URL_SAFE = str.maketrans("-_", "+/")  # base64's URL-safe alphabet to the standard one


@dataclass(frozen=True)
class Output:
    name: str
    binary: bool
    classes: int = 0  # Triton's classification extension: the k best "score:index:label" strings


@dataclass(frozen=True)
class InferRequest:
    """A parsed request; its ``images`` are N uint8 arrays (UINT8 input) or N encoded files (BYTES input)."""

    id: str | None
    outputs: list[Output]
    images: list[Any]


def model_metadata(info: ModelInfo) -> dict[str, Any]:
    """``GET /v2/models/{name}``: KServe's fields, and ``rt_info`` as OpenVINO Model Server reports it (what
    Model API's OVMSAdapter reads). Like OVMS it lists the tensor input; ``encoded_inputs`` adds the files."""
    return {
        "name": info.name, "versions": [info.version], "platform": "openvino",
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, info.input_height, info.input_width, 3]}],
        "outputs": [{"name": OUTPUT_SCORES, "datatype": "FP32", "shape": [-1, 2]},
                    {"name": OUTPUT_PROBABILITY, "datatype": "FP32", "shape": [-1, 1]}],
        "encoded_inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "rt_info": {"model_info": info.to_strings()},
    }


def parse_request(body: bytearray, header_length: str | None, info: ModelInfo) -> InferRequest:
    """Parse ``POST .../infer``; ``header_length`` is the ``Inference-Header-Content-Length`` header or None
    (0: the whole body is one encoded image file, as OpenVINO Model Server allows)."""
    size = len(body) if header_length is None else int(header_length) if header_length.isdecimal() else -1
    if not 0 <= size <= len(body):
        raise ValueError(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes")
    if size == 0 and header_length is not None:
        return InferRequest(None, _outputs(None, False), [bytes(body)])
    request, binary = _json_object(memoryview(body)[:size]), memoryview(body)[size:]
    if not isinstance(request.get("id", ""), str):
        raise ValueError("'id' must be a string")
    outputs = _outputs(request.get("outputs"), _parameters(request).get("binary_data_output", False) is True)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ValueError(f"the request has {len(inputs) if isinstance(inputs, list) and inputs else 'no'} 'inputs'; "
                         f"send one input named {INPUT_NAME!r}")
    tensor, shape = inputs[0], inputs[0].get("shape")
    if tensor.get("name") != INPUT_NAME:
        raise ValueError(f"unknown input {tensor.get('name')!r}; this model's input is {INPUT_NAME!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"input {INPUT_NAME!r}: 'shape' must be a list of non-negative integers")
    raw = _binary_part(tensor, binary)
    if tensor.get("datatype") == "UINT8":
        images = list(_pixels(shape, tensor.get("data"), raw, info))
    elif tensor.get("datatype") == "BYTES":
        count = math.prod(shape)
        images = _split_bytes(raw, count) if raw is not None else _base64_files(tensor.get("data"), count)
    else:
        raise ValueError(f"input {INPUT_NAME!r}: datatype {tensor.get('datatype')!r} is not accepted; send UINT8 "
                         f"[N, {info.input_height}, {info.input_width}, 3] (decoded, resized RGB) or BYTES [N] "
                         "(image files)")
    return InferRequest(request.get("id"), outputs, images)


def encode_response(request: InferRequest, probabilities: np.ndarray, info: ModelInfo) -> tuple[bytes, int | None]:
    """The response body and, when an output is binary, the length of its JSON header (for the header)."""
    probability = np.asarray(probabilities, np.float32).reshape(-1, 1)
    tensors = {OUTPUT_PROBABILITY: probability, OUTPUT_SCORES: np.concatenate([1 - probability, probability], 1)}
    entries, blobs = [], []
    for output in request.outputs:
        values = tensors[output.name]
        if output.classes:
            best = np.argsort(-values, axis=1, kind="stable")[:, : output.classes]
            items = [f"{shortest(row[i])}:{i}:{info.labels[i]}".encode() for row, top in zip(values, best) for i in top]
            entry: dict[str, Any] = {"name": output.name, "datatype": "BYTES", "shape": [len(values), output.classes]}
            blob, data = b"".join(struct.pack("<I", len(s)) + s for s in items), [s.decode() for s in items]
        else:
            entry = {"name": output.name, "datatype": "FP32", "shape": list(values.shape)}
            blob, data = values.astype("<f4").tobytes(), [shortest(v) for v in values.ravel()]
        if output.binary:
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = data
        entries.append(entry)
    response = {"model_name": info.name, "model_version": info.version,
                **({"id": request.id} if request.id is not None else {}), "outputs": entries}
    header = json.dumps(response, separators=(",", ":")).encode()
    return (header + b"".join(blobs), len(header)) if blobs else (header, None)


def _json_object(data: memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data))
    except UnicodeDecodeError:
        raise ValueError("the inference request is not UTF-8 JSON (binary data needs the "
                         f"{HEADER_LENGTH} header)") from None
    except json.JSONDecodeError as exc:  # its message says where: "Expecting value: line 1 column 1 (char 0)"
        raise ValueError(f"the inference request is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("the inference request JSON is nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("the inference request must be a JSON object with 'inputs'")
    return value


def _parameters(item: dict[str, Any]) -> dict[str, Any]:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError("'parameters' must be a JSON object")
    return parameters


def _outputs(asked: Any, binary: bool) -> list[Output]:
    if asked is None:
        return [Output(name, binary) for name in OUTPUTS]
    if not isinstance(asked, list) or not asked or not all(isinstance(o, dict) for o in asked):
        raise ValueError("'outputs' must be a non-empty list of objects with a 'name' (leave it out for every output)")
    outputs = []
    for item in asked:
        if item.get("name") not in OUTPUTS:
            raise ValueError(f"unknown output {item.get('name')!r}; this model's outputs are "
                             f"{', '.join(map(repr, OUTPUTS))}")
        parameters = _parameters(item)
        classes = parameters.get("classification", 0)
        if type(classes) is not int or classes < 0 or (classes and item["name"] != OUTPUT_SCORES):
            raise ValueError(f"'classification' must be a non-negative integer, on the {OUTPUT_SCORES!r} output only")
        outputs.append(Output(item["name"], parameters.get("binary_data", binary) is True, min(classes, 2)))
    return outputs


def _binary_part(tensor: dict[str, Any], binary: memoryview) -> memoryview | None:
    """The input's raw bytes from the binary extension, or None when its ``data`` is in the JSON."""
    size = _parameters(tensor).get("binary_data_size")
    if "data" in tensor:
        if size is not None or len(binary):
            raise ValueError(f"input {INPUT_NAME!r} has both 'data' and binary data ({len(binary)} bytes)")
        return None
    if size is not None and (type(size) is not int or size != len(binary)):
        raise ValueError(f"input {INPUT_NAME!r}: binary_data_size is {size}, but {len(binary)} bytes follow the JSON")
    if not len(binary):
        raise ValueError(f"input {INPUT_NAME!r} has no 'data' and no binary data")
    return binary


def _pixels(shape: list[int], data: Any, raw: memoryview | None, info: ModelInfo) -> np.ndarray:
    expected = [info.input_height, info.input_width, 3]
    if len(shape) != 4 or shape[1:] != expected:
        raise ValueError(f"input {INPUT_NAME!r}: UINT8 shape {shape} does not match the model's [N, "
                         f"{', '.join(map(str, expected))}] (resize with the model's preprocessing, "
                         "or send files as BYTES)")
    values = _flat(data) if raw is None else np.frombuffer(raw, np.uint8)  # binary: a view of the body, no copy
    if len(values) != math.prod(shape):
        raise ValueError(f"input {INPUT_NAME!r}: {len(values)} {'values' if raw is None else 'bytes of binary data'} "
                         f"for UINT8 {shape}, which needs {math.prod(shape)}")
    if raw is None and len(values) and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255):
        raise ValueError(f"input {INPUT_NAME!r}: UINT8 data must be integers 0-255")
    return values.astype(np.uint8, copy=False).reshape(shape)


def _flat(data: Any, dtype: Any = None) -> np.ndarray:
    """JSON ``data``, flat or evenly nested, as a flat array in row-major order."""
    try:
        if isinstance(data, list):
            return np.array(data, dtype=dtype).ravel()
    except (TypeError, ValueError, OverflowError):
        pass
    raise ValueError(f"input {INPUT_NAME!r}: 'data' must be a list of values, flat or evenly nested")


def _split_bytes(raw: memoryview, count: int) -> list[bytes]:
    """BYTES in the binary extension: each element after its 4-byte little-endian length, or one bare file."""
    items, offset = [], 0
    while offset + 4 <= len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            break
        items.append(bytes(raw[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    if offset == len(raw) and len(items) == count:
        return items
    if count == 1:  # an image file never starts with 4 bytes that happen to give its own remaining length
        return [bytes(raw)]
    raise ValueError(f"input {INPUT_NAME!r}: the binary BYTES data does not hold {count} length-prefixed elements")


def _base64_files(data: Any, count: int) -> list[bytes]:
    """BYTES in JSON: base64 strings (standard or URL-safe, padded or not) or ``{"b64": ...}`` objects."""
    items, files = _flat(data, object), []
    if len(items) != count:
        raise ValueError(f"input {INPUT_NAME!r}: {len(items)} BYTES elements for a shape of {count}")
    for index, item in enumerate(items):
        try:
            text = (item.get("b64") if isinstance(item, dict) else item).strip().translate(URL_SAFE)
            files.append(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
        except (AttributeError, ValueError):  # binascii.Error is a ValueError
            raise ValueError(f"input {INPUT_NAME!r}: BYTES element {index} is not base64 (in JSON, image files travel "
                             "base64-encoded; raw bytes need the binary extension)") from None
    return files
