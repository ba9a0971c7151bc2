"""The KServe v2 codec of emotion-serve on its own (no server): request parsing and response encoding."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from emotion.runtime.kserve import encode_response, model_metadata, parse_request
from emotion.runtime.metadata import ModelInfo

INFO = ModelInfo(input_height=2, input_width=3)


def _parse(request, binary: bytes = b""):
    header = json.dumps(request).encode()
    if binary:
        return parse_request(bytearray(header + binary), str(len(header)), INFO)
    return parse_request(bytearray(header), None, INFO)


def test_uint8_flat_nested_and_binary_agree():
    pixels = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    image = {"name": "image", "datatype": "UINT8", "shape": [2, 2, 3, 3]}
    flat = _parse({"inputs": [dict(image, data=pixels.ravel().tolist())]})
    nested = _parse({"inputs": [dict(image, data=pixels.tolist())]})
    binary = _parse({"inputs": [dict(image, parameters={"binary_data_size": pixels.nbytes})]}, pixels.tobytes())
    for parsed in (flat, nested, binary):
        assert len(parsed.images) == 2 and all(isinstance(image, np.ndarray) for image in parsed.images)
        np.testing.assert_array_equal(np.stack(parsed.images), pixels)
    assert all(image.flags.writeable for image in binary.images)  # a view over the (bytearray) body, usable by OpenVINO without a copy
    assert [o.name for o in flat.outputs] == ["scores", "probability"] and not flat.outputs[0].binary


def test_bytes_elements_base64_and_binary_layouts():
    files = [b"\xff\xd8\xff first", b"\x89PNG second"]
    as_json = _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                  "data": [base64.b64encode(files[0]).decode(), {"b64": base64.urlsafe_b64encode(files[1]).decode().rstrip("=")}]}]})
    assert as_json.images == files
    packed = b"".join(struct.pack("<I", len(f)) + f for f in files)
    as_binary = _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(packed)}}]}, packed)
    assert as_binary.images == files
    bare = _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}, files[0])  # OVMS: one image, no prefix
    assert bare.images == files[:1]
    whole = parse_request(bytearray(files[1]), "0", INFO)  # Inference-Header-Content-Length: 0
    assert whole.images == files[1:] and [o.name for o in whole.outputs] == ["scores", "probability"]


def test_malformed_requests_raise_one_line_errors():
    with pytest.raises(ValueError, match="2 'inputs'"):
        _parse({"inputs": [{"name": "image"}, {"name": "other"}]})
    with pytest.raises(ValueError, match="Inference-Header-Content-Length is 99"):
        parse_request(bytearray(b"{}"), "99", INFO)
    with pytest.raises(ValueError, match="Inference-Header-Content-Length is -1, but the body has 2 bytes"):
        parse_request(bytearray(b"{}"), "-1", INFO)
    with pytest.raises(ValueError, match="Inference-Header-Content-Length is abc"):
        parse_request(bytearray(b"{}"), "abc", INFO)
    with pytest.raises(ValueError, match="on the 'scores' output only"):
        _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}],
                "outputs": [{"name": "probability", "parameters": {"classification": 1}}]})
    with pytest.raises(ValueError, match="length-prefixed"):
        _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2]}]}, b"\x05\x00\x00\x00abc")
    # Shapes whose product overflows 64 bits must not wrap around to a small count.
    with pytest.raises(ValueError, match="1 BYTES elements for a shape of 18446744073709551616"):
        _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2**32, 2**32], "data": ["AA=="]}]})
    with pytest.raises(ValueError, match="does not hold 18446744073709551616"):
        _parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2**32, 2**32]}]}, b"\x01\x00\x00\x00a")
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_request(bytearray(b"[" * 100_000 + b"]" * 100_000), None, INFO)


def test_response_json_binary_and_classification():
    request = _parse({
        "id": "r1",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["AA==", "AA=="]}],
        "outputs": [{"name": "probability", "parameters": {"binary_data": True}},
                    {"name": "scores", "parameters": {"classification": 2}}],
    })
    body, header_length = encode_response(request, np.array([0.25, 0.75], np.float32), INFO)
    head = json.loads(body[:header_length])
    assert head["id"] == "r1" and head["model_name"] == "emotion" and head["model_version"] == "1"
    probability, scores = head["outputs"]  # in the order the request asked for them
    assert probability == {"name": "probability", "datatype": "FP32", "shape": [2, 1], "parameters": {"binary_data_size": 8}}
    np.testing.assert_array_equal(np.frombuffer(body[header_length:], "<f4"), [0.25, 0.75])
    assert scores["datatype"] == "BYTES" and scores["shape"] == [2, 2]
    assert scores["data"] == ["0.75:0:Negative", "0.25:1:Positive", "0.75:1:Positive", "0.25:0:Negative"]

    plain, none = encode_response(_parse({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]}),
                                        np.array([0.93], np.float32), INFO)
    assert none is None
    assert json.loads(plain)["outputs"][0]["data"] == [pytest.approx(0.07, abs=1e-6), 0.93]


def test_model_metadata_follows_the_model_info():
    meta = model_metadata(INFO.replace(name="mood", version="3"))
    assert meta["name"] == "mood" and meta["versions"] == ["3"]
    assert meta["inputs"][0]["shape"] == [-1, 2, 3, 3]
    assert meta["rt_info"]["model_info"]["model_name"] == "mood"
