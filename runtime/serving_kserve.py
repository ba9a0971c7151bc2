"""The KServe v2 inference protocol (REST), as OpenVINO Model Server and Triton speak it: numpy only.

What ``emotion-serve`` needs of the protocol, kept apart from the web framework so it can be read and
tested on its own:

* :func:`server_metadata`, :func:`model_metadata`: the ``GET /v2`` and ``GET /v2/models/{name}`` answers;
* :func:`parse_infer_request`: a ``POST .../infer`` body -> :class:`InferRequest`, for the JSON form and the
  binary tensor extension (``Inference-Header-Content-Length``: a JSON header followed by raw tensor bytes,
  what ``tritonclient`` sends with ``binary_data=True``);
* :func:`encode_infer_response`: the outputs asked for, in JSON or binary, in the same style.

The one input is ``image``, either

* ``UINT8`` ``[N, H, W, 3]``: images already decoded and resized to the model's input size (RGB, NHWC), as
  :func:`emotion.runtime.preprocess.preprocess` makes them; ``data`` flat or nested in JSON, or binary; or
* ``BYTES`` ``[N]``: encoded image files (JPEG, PNG, ...), decoded and resized by the server with the same
  preprocessing; base64 strings in JSON (``{"b64": ...}`` objects accepted too), or in binary each element
  preceded by its length as 4 little-endian bytes (the binary extension's BYTES layout; a single image may
  also be sent bare, without the length, as OpenVINO Model Server allows).

The outputs are ``probability`` ``FP32 [N, 1]`` (P(Positive)) and ``scores`` ``FP32 [N, 2]``
([P(Negative), P(Positive)]); both by default. Triton's classification extension is honoured on ``scores``
(``"parameters": {"classification": k}`` -> ``BYTES [N, k]`` of ``"score:index:label"``, best first).
Errors are :class:`RequestError` (an HTTP status and a one-line message, sent as ``{"error": message}``).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .metadata import INPUT_NAME, OUTPUT_PROBABILITY, OUTPUT_SCORES, ModelInfo

HEADER_LENGTH = "Inference-Header-Content-Length"
# The model's own output order: ``scores`` first, because OpenVINO Model API (and its OVMSAdapter) reads
# the first output as the class scores.
OUTPUTS = (OUTPUT_SCORES, OUTPUT_PROBABILITY)
EXTENSIONS = ("binary_tensor_data", "classification")
PLATFORM = "openvino"


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line ``message`` (``{"error": message}``)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad(message: str) -> RequestError:
    return RequestError(400, message)


# -- metadata -------------------------------------------------------------------------------------------------
def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "emotion-serve", "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(info: ModelInfo) -> dict[str, Any]:
    """``GET /v2/models/{name}``: KServe's fields, plus ``rt_info`` as recent OpenVINO Model Server reports it.

    Like OpenVINO Model Server, the metadata lists the tensor input (``UINT8 [-1, H, W, 3]``); that the same
    input also takes encoded files (``BYTES [-1]``) is said in ``encoded_inputs`` (not a KServe field;
    clients that do not know it ignore it).
    """
    return {
        "name": info.name,
        "versions": [info.version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, info.input_height, info.input_width, 3]}],
        "outputs": [
            {"name": OUTPUT_SCORES, "datatype": "FP32", "shape": [-1, 2]},
            {"name": OUTPUT_PROBABILITY, "datatype": "FP32", "shape": [-1, 1]},
        ],
        "encoded_inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        # What model_api's OVMSAdapter reads (labels, threshold, preprocessing), as strings.
        "rt_info": {"model_info": info.to_strings()},
    }


# -- requests ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    class_count: int = 0


@dataclass
class InferRequest:
    """A parsed inference request: either ``pixels`` (UINT8, N x H x W x 3) or ``files`` (BYTES, N)."""

    id: str | None
    datatype: str  # "UINT8" or "BYTES"
    count: int
    pixels: np.ndarray | None = None
    files: list[bytes] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)


def _json_object(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    if len(data) == 0:
        raise bad("empty request: expected a JSON inference request")
    try:
        value = json.loads(bytes(data))
    except UnicodeDecodeError:
        raise bad(f"the inference request is not UTF-8 JSON (binary tensor data needs the {HEADER_LENGTH} header)") from None
    except json.JSONDecodeError as exc:
        raise bad(f"the inference request is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise bad("the inference request JSON is nested too deeply") from None
    if not isinstance(value, dict):
        raise bad("the inference request must be a JSON object with 'inputs'")
    return value


def _parameters(obj: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise bad(f"{where}: 'parameters' must be a JSON object")
    return params


def _shape(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise bad(f"input {INPUT_NAME!r}: 'shape' must be a list of non-negative integers, got {json.dumps(value)[:80]}")
    return value


def _flatten(data: Any, out: list) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, out)
        else:
            out.append(item)


def _flat_list(data: list) -> list:
    """Nested JSON lists, flattened in row-major order (KServe allows flat or nested ``data``)."""
    if not any(isinstance(item, list) for item in data):
        return data
    out: list = []
    try:
        _flatten(data, out)
    except RecursionError:
        raise bad(f"input {INPUT_NAME!r}: 'data' is nested too deeply") from None
    return out


def parse_infer_request(
    body: bytes | bytearray,
    header_length: str | None,
    info: ModelInfo,
    *,
    max_batch: int,
) -> InferRequest:
    """Parse ``POST /v2/models/{name}/infer``; :class:`RequestError` (400, or 413 for too many images).

    ``header_length``: the ``Inference-Header-Content-Length`` header (None when absent). With ``"0"``, as
    OpenVINO Model Server allows for a single input, the whole body is one encoded image file.
    """
    view = memoryview(body)
    if header_length is not None:
        try:
            json_size = int(header_length)
        except ValueError:
            raise bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if json_size < 0 or json_size > len(view):
            raise bad(f"{HEADER_LENGTH} is {json_size}, but the body has {len(view)} bytes")
        if json_size == 0:
            return _files_request(None, [bytes(view)], _requested_outputs(None, False), max_batch)
        request = _json_object(view[:json_size])
        binary = view[json_size:]
    else:
        request = _json_object(view)
        binary = view[:0]

    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("'id' must be a string")
    top = _parameters(request, "request")
    outputs = _requested_outputs(request.get("outputs"), bool(top.get("binary_data_output", False)))

    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad(f"the request has no 'inputs'; send one input named {INPUT_NAME!r}")
    if len(inputs) != 1:
        names = ", ".join(repr(i.get("name")) for i in inputs if isinstance(i, dict))
        raise bad(f"the request has {len(inputs)} inputs ({names}); this model takes one, {INPUT_NAME!r}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise bad("each input must be a JSON object")
    name = tensor.get("name")
    if name != INPUT_NAME:
        raise bad(f"unknown input {name!r}; this model's input is {INPUT_NAME!r}")
    datatype = tensor.get("datatype")
    shape = _shape(tensor.get("shape"))
    params = _parameters(tensor, f"input {INPUT_NAME!r}")

    raw: memoryview | None = None
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f"input {INPUT_NAME!r}: binary_data_size must be a non-negative integer")
        if size > len(binary):
            raise bad(f"input {INPUT_NAME!r}: binary_data_size is {size}, but only {len(binary)} bytes follow the JSON")
        if size != len(binary):
            raise bad(f"{len(binary) - size} unexpected bytes of binary data after the input")
        raw = binary[:size]
        if "data" in tensor:
            raise bad(f"input {INPUT_NAME!r} has both 'data' and binary data")
    elif "data" not in tensor:
        if len(binary):
            raw = binary  # the only input: OpenVINO Model Server lets binary_data_size be omitted
        else:
            raise bad(f"input {INPUT_NAME!r} has no 'data' and no binary data")
    elif len(binary):
        raise bad(f"{len(binary)} unexpected bytes of binary data after the JSON (no input declares binary_data_size)")

    if datatype == "UINT8":
        return _pixels_request(request_id, shape, tensor.get("data"), raw, outputs, info, max_batch)
    if datatype == "BYTES":
        count = int(np.prod(shape)) if shape else 1
        files = _split_bytes(raw, count) if raw is not None else _base64_files(tensor.get("data"), count)
        return _files_request(request_id, files, outputs, max_batch)
    raise bad(
        f"input {INPUT_NAME!r}: datatype {datatype!r} is not accepted; send UINT8 "
        f"[N, {info.input_height}, {info.input_width}, 3] (decoded, resized RGB) or BYTES [N] (image files)"
    )


def _check_batch(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise RequestError(413, f"{count} images in one request; this server takes at most {max_batch} (--max-batch)")


def _pixels_request(
    request_id: str | None,
    shape: list[int],
    data: Any,
    raw: memoryview | None,
    outputs: list[RequestedOutput],
    info: ModelInfo,
    max_batch: int,
) -> InferRequest:
    expected = [info.input_height, info.input_width, 3]
    if len(shape) != 4 or shape[1:] != expected:
        raise bad(
            f"input {INPUT_NAME!r}: UINT8 shape {shape} does not match the model's [N, {', '.join(map(str, expected))}] "
            "(resize with the model's preprocessing first, or send the encoded files as BYTES)"
        )
    count = shape[0]
    _check_batch(count, max_batch)
    size = count * info.input_height * info.input_width * 3
    if raw is not None:
        if len(raw) != size:
            raise bad(f"input {INPUT_NAME!r}: {len(raw)} bytes of binary data for UINT8 {shape}, which needs {size}")
        # Views over the request body, not copies (the body is a bytearray, so the arrays are writeable).
        pixels = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    else:
        if not isinstance(data, list):
            raise bad(f"input {INPUT_NAME!r}: 'data' must be a list of integers 0-255")
        flat = _flat_list(data)
        if len(flat) != size:
            raise bad(f"input {INPUT_NAME!r}: {len(flat)} values for UINT8 {shape}, which needs {size}")
        try:
            values = np.array(flat)
        except (TypeError, ValueError, OverflowError):
            values = None
        if values is None or (values.size and values.dtype.kind not in "iu"):
            raise bad(f"input {INPUT_NAME!r}: UINT8 data must be integers 0-255")
        if values.size and (values.min() < 0 or values.max() > 255):
            raise bad(f"input {INPUT_NAME!r}: UINT8 values must lie in 0-255")
        pixels = values.astype(np.uint8).reshape(shape)
    return InferRequest(request_id, "UINT8", count, pixels=pixels, outputs=outputs)


def _files_request(
    request_id: str | None, files: list[bytes], outputs: list[RequestedOutput], max_batch: int
) -> InferRequest:
    _check_batch(len(files), max_batch)
    return InferRequest(request_id, "BYTES", len(files), files=files, outputs=outputs)


def _split_bytes(raw: memoryview, count: int) -> list[bytes]:
    """The binary extension's BYTES layout: each element as a 4-byte little-endian length, then its bytes.

    One bare image (no length prefix) is accepted too, as OpenVINO Model Server does for a single input: an
    image file never starts with 4 bytes that happen to give its own remaining length.
    """
    items: list[bytes] = []
    offset = 0
    while offset + 4 <= len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            break
        items.append(bytes(raw[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    if offset == len(raw) and len(items) == count:
        return items
    if count == 1:
        return [bytes(raw)]
    raise bad(
        f"input {INPUT_NAME!r}: the binary BYTES data does not hold {count} length-prefixed elements "
        "(each element: 4-byte little-endian length, then the file's bytes)"
    )


def _base64_files(data: Any, count: int) -> list[bytes]:
    if not isinstance(data, list):
        raise bad(f"input {INPUT_NAME!r}: BYTES 'data' must be a list of base64 strings (one per image file)")
    flat = _flat_list(data)
    if len(flat) != count:
        raise bad(f"input {INPUT_NAME!r}: {len(flat)} BYTES elements for shape with {count}")
    files = []
    for index, item in enumerate(flat):
        if isinstance(item, dict) and isinstance(item.get("b64"), str):
            item = item["b64"]
        if not isinstance(item, str):
            raise bad(f"input {INPUT_NAME!r}: BYTES element {index} must be a base64 string")
        text = item.strip()
        try:
            if "-" in text or "_" in text:
                decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            else:
                decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise bad(
                f"input {INPUT_NAME!r}: BYTES element {index} is not base64 (in JSON, send image files "
                "base64-encoded; raw bytes need the binary extension)"
            ) from None
        files.append(decoded)
    return files


def _requested_outputs(value: Any, binary_default: bool) -> list[RequestedOutput]:
    if value is None:
        return [RequestedOutput(name, binary_default) for name in OUTPUTS]
    if not isinstance(value, list):
        raise bad("'outputs' must be a list")
    outputs = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad("each requested output must be an object with a 'name'")
        name = item["name"]
        if name not in OUTPUTS:
            raise bad(f"unknown output {name!r}; this model's outputs are {', '.join(map(repr, OUTPUTS))}")
        params = _parameters(item, f"output {name!r}")
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise bad(f"output {name!r}: binary_data must be true or false")
        classes = params.get("classification", 0)
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise bad(f"output {name!r}: classification must be a non-negative integer")
        if classes and name != OUTPUT_SCORES:
            raise bad(f"classification is available on the {OUTPUT_SCORES!r} output, not {name!r}")
        outputs.append(RequestedOutput(name, binary, min(classes, 2)))
    if not outputs:
        raise bad("'outputs' is empty; leave it out to get every output")
    return outputs


# -- responses ----------------------------------------------------------------------------------------------------
def shortest_float(value: float) -> float:
    """A float32 as the shortest decimal that reads back to the same float32 (0.93, not 0.9300000071525574)."""
    return float(str(np.float32(value)))


def _serialize_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def encode_infer_response(
    request: InferRequest,
    probabilities: np.ndarray,
    info: ModelInfo,
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (for the header)."""
    probability = np.asarray(probabilities, dtype=np.float32).reshape(-1, 1)
    scores = np.concatenate([np.float32(1.0) - probability, probability], axis=1)
    tensors = {OUTPUT_PROBABILITY: probability, OUTPUT_SCORES: scores}
    outputs_json = []
    blobs: list[bytes] = []
    for wanted in request.outputs:
        values = tensors[wanted.name]
        if wanted.class_count:
            # Triton's classification extension: "score:index:label" for the k best classes, best first.
            order = np.argsort(-values, axis=1, kind="stable")[:, : wanted.class_count]
            strings = [
                f"{shortest_float(row[i])}:{i}:{info.labels[i]}".encode()
                for row, idx in zip(values, order)
                for i in idx
            ]
            entry: dict[str, Any] = {"name": wanted.name, "datatype": "BYTES", "shape": [len(values), wanted.class_count]}
            if wanted.binary:
                blob = _serialize_bytes(strings)
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = [s.decode() for s in strings]
        else:
            entry = {"name": wanted.name, "datatype": "FP32", "shape": list(values.shape)}
            if wanted.binary:
                blob = np.ascontiguousarray(values, dtype="<f4").tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = [shortest_float(v) for v in values.ravel()]
        outputs_json.append(entry)
    response: dict[str, Any] = {"model_name": info.name, "model_version": info.version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs_json
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
