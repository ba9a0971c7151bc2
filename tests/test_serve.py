"""emotion-serve over real HTTP: a uvicorn server on a free loopback port, tiny OpenVINO models (no TensorFlow).

Clients: httpx for /predict and raw requests, and the real KServe v2 client ``tritonclient.http`` for
/v2. Every answer is compared with the same model run in-process (``EmotionClassifier.predict``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from _tiny_models import HEIGHT, WIDTH, reference_probability  # noqa: E402
from _server import BackgroundServer  # noqa: E402
from emotion.runtime import EmotionClassifier, Prediction  # noqa: E402
from emotion.runtime.serve import build_parser, main  # noqa: E402
from emotion.runtime.server import create_app  # noqa: E402

TWITTER = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter-sample"
UPLOAD_LIMIT = 1024 * 1024  # 1 MiB for the test server: every photo below fits, 413 is cheap to provoke


def _options(*argv: str):
    """emotion-serve's options, the server's settings, with a 1 MiB upload limit unless told otherwise."""
    return build_parser().parse_args(["--max-upload-mb", "1", *argv])


def _jpeg(seed: int, size=(120, 90)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[..., seed % 3] = np.uint8(40 + 20 * (seed % 9))  # a colour cast per image: spread the answers
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, bytes]]:
    """Real photos when the shared sample is here (both classes), plus synthetic JPEGs, as (name, bytes)."""
    found: list[tuple[str, bytes]] = []
    for label in ("Positive", "Negative"):
        folder = TWITTER / label
        if folder.is_dir():
            for path in sorted(folder.glob("*.jpg"))[:6]:
                found.append((f"{label}-{path.name}", path.read_bytes()))
    found += [(f"synthetic-{i}.jpg", _jpeg(i)) for i in range(8)]
    return found


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from _tiny_models import make_export

    return make_export(tmp_path_factory.mktemp("serve") / "export")


@pytest.fixture(scope="module")
def reference(model_dir):
    """The model in-process, what every HTTP answer is compared with."""
    clf = EmotionClassifier.load(model_dir, cache_dir=None)
    yield clf
    clf.close()


@pytest.fixture(scope="module")
def server(model_dir):
    clf = EmotionClassifier.load(model_dir, mode="throughput", cache_dir=None, workers=2)
    with BackgroundServer(create_app(clf, _options("--timeout", "20", "--max-batch", "16", "--read-timeout", "3"))) as running:
        running.classifier = clf
        yield running
    assert clf.backend.closed  # the lifespan's end closed the model


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture()
def triton(server):
    kserve = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)
    yield kserve
    kserve.close()


def _expected(reference, data: bytes) -> tuple[str, float]:
    prediction = reference.predict(data)
    return prediction.label, prediction.probability


def _assert_alive(http) -> None:
    response = http.get("/v2/health/ready")
    assert response.status_code == 200 and response.json() == {"ready": True}


# -- health and metadata -----------------------------------------------------------------------------------------
def test_health_and_metadata_routes(client, triton):
    assert client.get("/v2/health/live").json() == {"live": True}
    _assert_alive(client)
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("emotion") and triton.is_model_ready("emotion", "1")
    assert not triton.is_model_ready("emotion", "2") and not triton.is_model_ready("nope")

    server_meta = triton.get_server_metadata()
    assert server_meta["name"] == "emotion-serve" and "binary_tensor_data" in server_meta["extensions"]

    meta = triton.get_model_metadata("emotion")
    assert meta == triton.get_model_metadata("emotion", "1") == client.get("/v2/models/emotion/versions/1").json()
    assert meta["name"] == "emotion" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, HEIGHT, WIDTH, 3]}]
    assert meta["encoded_inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "probability", "datatype": "FP32", "shape": [-1, 1]},
    ]
    assert meta["rt_info"]["model_info"]["labels"] == "Negative Positive"

    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/emotion/versions/2", "/v2/models/emotion/versions/2/ready"):
        response = client.get(path)
        assert response.status_code == 404 and set(response.json()) == {"error"}, path
    response = client.get("/no/such/route")
    assert response.status_code == 404 and response.json() == {"error": "no route GET /no/such/route"}
    assert client.get("/predict").status_code == 405


# -- /predict --------------------------------------------------------------------------------------------------
def test_predict_one_file_matches_in_process(client, reference, photos):
    for name, data in photos:
        response = client.post("/predict", files={"data": (name, data, "image/jpeg")})
        assert response.status_code == 200, response.text
        body = response.json()
        label, probability = _expected(reference, data)
        assert body["filename"] == name and body["label"] == label
        assert body["probability"] == pytest.approx(probability, abs=1e-6)
        assert body["threshold"] == reference.info.threshold and body["labels"] == ["Negative", "Positive"]
        assert body["model"] == {"name": "emotion", "version": "1"}
    labels = {_expected(reference, data)[0] for _, data in photos}
    assert labels == {"Negative", "Positive"}  # the sample exercises both answers

    # The raw image as the body works too.
    name, data = photos[0]
    response = client.post("/predict", content=data, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200 and response.json()["probability"] == pytest.approx(_expected(reference, data)[1], abs=1e-6)


def test_predict_several_files_with_a_bad_one(client, reference, photos):
    chosen = photos[:3] + photos[-2:]
    files = [("data", (name, data, "image/jpeg")) for name, data in chosen]
    files.insert(2, ("data", ("notes.jpg", b"not an image at all", "image/jpeg")))
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["filename"] for r in results] == [f[1][0] for f in files]  # upload order
    assert results[2] == {"filename": "notes.jpg", "label": None, "probability": None, "error": "not an image Pillow can identify"}
    for result, (name, data) in zip(results[:2] + results[3:], chosen):
        label, probability = _expected(reference, data)
        assert result["error"] is None and result["label"] == label
        assert result["probability"] == pytest.approx(probability, abs=1e-6)
    assert body["labels"] == ["Negative", "Positive"] and body["threshold"] == reference.info.threshold

    # All bad: 400, the per-file reasons still listed.
    response = client.post(
        "/predict", files=[("data", ("a.jpg", b"", "image/jpeg")), ("data", ("b.png", b"\x89PNG\r\n\x1a\nbroken", "image/png"))]
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "none of the 2 files could be classified"
    assert [r["error"] is not None for r in body["results"]] == [True, True]
    _assert_alive(client)


def test_predict_bad_requests_are_400_and_the_server_keeps_serving(client, reference, photos):
    cases = [
        ({"files": {"data": ("x.txt", b"hello", "text/plain")}}, "x.txt: not an image Pillow can identify"),
        ({"files": {"image": ("a.jpg", photos[0][1], "image/jpeg")}}, "in the field 'data' (curl -F data=@photo.jpg), or as the raw body with Content-Type image/* (multipart fields sent: image)"),
        ({"data": {"data": "text, not a file"}}, "invalid request: body.data"),
        ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, "send the image as multipart/form-data"),
        ({"content": b"\xff\xd8\xff\xe0 truncated", "headers": {"Content-Type": "image/jpeg"}}, ""),
        ({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, ""),
    ]
    for kwargs, message in cases:
        response = client.post("/predict", **kwargs)
        assert response.status_code == 400, (kwargs, response.text)
        assert message in response.json()["error"]
        _assert_alive(client)
    # Too many files for --max-batch (16 here): 413.
    response = client.post("/predict", files=[("data", (f"{i}.jpg", photos[-1][1], "image/jpeg")) for i in range(17)])
    assert response.status_code == 413 and "--max-batch" in response.json()["error"]
    name, data = photos[1]
    assert client.post("/predict", files={"data": (name, data)}).json()["label"] == _expected(reference, data)[0]


def test_oversized_bodies_get_413(client, triton, photos):
    big = os.urandom(UPLOAD_LIMIT + 1)
    # Declared too large (Content-Length): refused before the body is read.
    response = client.post("/predict", content=big, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413 and "1 MiB" in response.json()["error"]
    response = client.post("/predict", files={"data": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413

    # No Content-Length (chunked): refused while streaming, as soon as the limit is passed.
    def chunks():
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    response = client.post("/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413 and "too large" in response.json()["error"]
    response = client.post("/v2/models/emotion/infer", content=chunks())
    assert response.status_code == 413

    # The KServe client gets the KServe error.
    item = httpclient.InferInput("image", [1], "BYTES")
    item.set_data_from_numpy(np.array([big], dtype=np.object_), binary_data=True)
    with pytest.raises(InferenceServerException, match="too large"):
        triton.infer("emotion", [item])
    _assert_alive(client)
    name, data = photos[0]
    assert client.post("/predict", files={"data": (name, data)}).status_code == 200


# -- KServe v2 with tritonclient -----------------------------------------------------------------------------------
def _batch(reference, photos, count: int) -> tuple[np.ndarray, list[bytes]]:
    files = [data for _, data in photos[:count]]
    return np.stack([reference.preprocess(data) for data in files]), files


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_uint8_tensors(triton, reference, photos, binary):
    pixels, files = _batch(reference, photos, 5)
    expected = np.array([reference.predict(data).probability for data in files], np.float32)
    np.testing.assert_allclose(expected, reference_probability(pixels), atol=1e-5)  # float32 means

    item = httpclient.InferInput("image", list(pixels.shape), "UINT8")
    item.set_data_from_numpy(pixels, binary_data=binary)
    # Default outputs: both, in binary (tritonclient asks binary_data_output).
    result = triton.infer("emotion", [item])
    probability, scores = result.as_numpy("probability"), result.as_numpy("scores")
    assert probability.shape == (5, 1) and probability.dtype == np.float32 and scores.shape == (5, 2)
    np.testing.assert_allclose(probability[:, 0], expected, atol=1e-6)
    np.testing.assert_allclose(scores, np.stack([1 - expected, expected], 1), atol=1e-6)

    # Outputs asked by name, as JSON or binary, on the versioned route.
    outputs = [httpclient.InferRequestedOutput("probability", binary_data=not binary)]
    result = triton.infer("emotion", [item], model_version="1", outputs=outputs, request_id="req-7")
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_version"] == "1"
    assert result.as_numpy("scores") is None
    np.testing.assert_allclose(result.as_numpy("probability")[:, 0], expected, atol=1e-6)


def test_tritonclient_encoded_images_as_bytes(triton, reference, photos):
    files = [data for _, data in photos[:6]]
    expected = [reference.predict(data) for data in files]

    binary = httpclient.InferInput("image", [len(files)], "BYTES")
    binary.set_data_from_numpy(np.array(files, dtype=np.object_), binary_data=True)
    result = triton.infer("emotion", [binary])
    np.testing.assert_allclose(result.as_numpy("probability")[:, 0], [p.probability for p in expected], atol=1e-6)

    # JSON: image files travel base64-encoded.
    encoded = np.array([base64.b64encode(data) for data in files], dtype=np.object_)
    as_json = httpclient.InferInput("image", [len(files)], "BYTES")
    as_json.set_data_from_numpy(encoded, binary_data=False)
    classes = [httpclient.InferRequestedOutput("scores", binary_data=False, class_count=1)]
    result = triton.infer("emotion", [as_json], outputs=classes)
    top = [entry.decode() if isinstance(entry, bytes) else entry for entry in result.as_numpy("scores").ravel()]
    assert [entry.split(":")[2] for entry in top] == [p.label for p in expected]
    assert [int(entry.split(":")[1]) for entry in top] == [int(p.label == "Positive") for p in expected]

    # A bad file in the batch fails the request (KServe has no per-element errors), with its index.
    bad = httpclient.InferInput("image", [2], "BYTES")
    bad.set_data_from_numpy(np.array([files[0], b"garbage"], dtype=np.object_), binary_data=True)
    with pytest.raises(InferenceServerException, match="element 1: not an image"):
        triton.infer("emotion", [bad])
    assert triton.is_server_ready()


def _output(body: dict, name: str) -> list:
    return next(o["data"] for o in body["outputs"] if o["name"] == name)


def test_raw_kserve_requests(client, reference, photos):
    """JSON and binary requests written by hand: nested data, OVMS's bare image forms."""
    pixels, files = _batch(reference, photos, 2)
    expected = [reference.predict(data).probability for data in files]
    nested = {"inputs": [{"name": "image", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.tolist()}]}
    body = client.post("/v2/models/emotion/infer", json=nested).json()
    assert body["model_name"] == "emotion" and [o["name"] for o in body["outputs"]] == ["scores", "probability"]
    assert _output(body, "probability") == pytest.approx(expected, abs=1e-6)

    # {"b64": ...} objects, as TensorFlow Serving's JSON has them.
    request = {"inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES", "data": [[{"b64": base64.b64encode(files[0]).decode()}]]}]}
    body = client.post("/v2/models/emotion/infer", json=request).json()
    assert _output(body, "probability") == pytest.approx(expected[:1], abs=1e-6)

    # Binary extension, one image without its length prefix (OpenVINO Model Server accepts that), binary output.
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(files[0])}}],
                         "outputs": [{"name": "probability", "parameters": {"binary_data": True}}]}).encode()
    response = client.post("/v2/models/emotion/infer", content=header + files[0], headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    split = int(response.headers["Inference-Header-Content-Length"])
    meta = json.loads(response.content[:split])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 4
    assert np.frombuffer(response.content[split:], "<f4")[0] == pytest.approx(expected[0], abs=1e-6)

    # Inference-Header-Content-Length: 0 -> the whole body is one image file.
    response = client.post("/v2/models/emotion/infer", content=files[1], headers={"Inference-Header-Content-Length": "0"})
    assert _output(response.json(), "probability") == pytest.approx(expected[1:], abs=1e-6)


def test_kserve_bad_requests_are_400_404_and_the_server_keeps_serving(client, triton, reference, photos):
    pixels, files = _batch(reference, photos, 1)
    image = {"name": "image", "shape": [1, HEIGHT, WIDTH, 3], "datatype": "UINT8", "data": pixels.ravel().tolist()}
    cases = [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"inputs": []}), "no 'inputs'"),
        (json.dumps({"inputs": [dict(image, name="input_1")]}), "unknown input 'input_1'"),
        (json.dumps({"inputs": [dict(image, datatype="FP32")]}), "datatype 'FP32' is not accepted"),
        (json.dumps({"inputs": [dict(image, shape=[1, 64, 64, 3])]}), "does not match the model's"),
        (json.dumps({"inputs": [dict(image, data=[1, 2, 3])]}), "3 values"),
        (json.dumps({"inputs": [dict(image, data=[0.5] * pixels.size)]}), "integers 0-255"),
        (json.dumps({"inputs": [dict(image, data=[300] * pixels.size)]}), "0-255"),
        (json.dumps({"inputs": [image], "outputs": [{"name": "logits"}]}), "unknown output 'logits'"),
        (json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}), "not base64"),
        (json.dumps({"inputs": [{"name": "image", "shape": [2**32, 2**32], "datatype": "BYTES", "data": ["AA=="]}]}),
         "1 BYTES elements for a shape of 18446744073709551616"),
        (json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(b"nope").decode()]}]}), "element 0: not an image"),
    ]
    for body, message in cases:
        response = client.post("/v2/models/emotion/infer", content=body)
        assert response.status_code == 400, (body[:80], response.text)
        assert set(response.json()) == {"error"} and message in response.json()["error"], response.json()
    # Binary size that does not add up.
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, HEIGHT, WIDTH, 3], "datatype": "UINT8", "parameters": {"binary_data_size": 10}}]}).encode()
    response = client.post("/v2/models/emotion/infer", content=header + bytes(10), headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "10 bytes of binary data" in response.json()["error"]

    # Unknown model or version: 404, from the client too.
    assert client.post("/v2/models/nope/infer", json={"inputs": [image]}).status_code == 404
    assert client.post("/v2/models/emotion/versions/9/infer", json={"inputs": [image]}).status_code == 404
    item = httpclient.InferInput("image", list(pixels.shape), "UINT8")
    item.set_data_from_numpy(pixels)
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as caught:
        triton.infer("nope", [item])
    assert caught.value.status() == "404"
    # Still serving, with the right answer.
    assert triton.infer("emotion", [item]).as_numpy("probability")[0, 0] == pytest.approx(reference.predict(files[0]).probability, abs=1e-6)


# -- concurrency -------------------------------------------------------------------------------------------------
def test_concurrent_burst_loses_nothing(server, reference, photos):
    """32 requests from 8 threads, /predict and KServe mixed: every one answered, each equal to in-process."""
    expected = {name: reference.predict(data) for name, data in photos}
    jobs = [(i, photos[i % len(photos)]) for i in range(32)]

    def one(job):
        index, (name, data) = job
        if index % 2:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                body = http.post("/predict", files={"data": (name, data)}).json()
            return name, body["label"], body["probability"]
        kserve = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        try:
            item = httpclient.InferInput("image", [1], "BYTES")
            item.set_data_from_numpy(np.array([data], dtype=np.object_))
            result = kserve.infer("emotion", [item], outputs=[httpclient.InferRequestedOutput("scores", class_count=1)])
            label = result.as_numpy("scores")[0, 0].decode().split(":")[2]
            probability = float(kserve.infer("emotion", [item]).as_numpy("probability")[0, 0])
            return name, label, probability
        finally:
            kserve.close()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, jobs))
    assert len(answers) == 32
    for name, label, probability in answers:
        assert label == expected[name].label
        assert probability == pytest.approx(expected[name].probability, abs=1e-6)


class _SlowClassifier:
    """A real classifier whose answers come ``delay`` seconds late (to provoke 503 and 504)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.info, self.spec = inner.info, inner.spec

    def submit(self, image) -> Future:
        def slow() -> Prediction:
            time.sleep(self.delay)
            return self.inner.predict(image)

        return self.inner._pool.submit(slow)

    def close(self) -> None:
        self.inner.close()


def test_saturation_gets_503_and_slow_requests_504(model_dir):
    """Admission counts the pixels the server is working on: 2 images' worth here (under the default per-request
    limit, which must not raise it), 6 clients at once."""
    data = _jpeg(1)  # 120x90: what it costs to decode
    inner = EmotionClassifier.load(model_dir, cache_dir=None, workers=6)
    slow = _SlowClassifier(inner, delay=1.5)
    one_image, two_images = str(120 * 90 / 1e6), str(2 * 120 * 90 / 1e6)  # megapixels
    settings = _options("--timeout", "5", "--max-batch", "4", "--max-megapixels", two_images)
    with BackgroundServer(create_app(slow, settings)) as running:
        barrier = threading.Barrier(6)

        def post(_):
            with httpx.Client(base_url=running.url, timeout=30) as http:
                barrier.wait()
                return http.post("/predict", files={"data": ("a.jpg", data)})

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(post, range(6)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 200, 503, 503, 503, 503], codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["Retry-After"] == "1" and "server busy" in busy.json()["error"]
        slow.delay = 0.0  # the server goes on
        with httpx.Client(base_url=running.url, timeout=30) as http:
            assert http.post("/predict", files={"data": ("a.jpg", data)}).status_code == 200
    assert inner.backend.closed

    inner = EmotionClassifier.load(model_dir, cache_dir=None)
    slow = _SlowClassifier(inner, delay=2.0)
    settings = _options("--timeout", "0.5", "--max-batch", "4", "--max-megapixels", one_image)
    # A request slower than --timeout: 504. Its image stays on a worker, so its pixels stay admitted until the
    # worker is done with it (503 meanwhile); then the server goes on.
    with BackgroundServer(create_app(slow, settings)) as running, httpx.Client(base_url=running.url, timeout=30) as http:
        response = http.post("/predict", files={"data": ("a.jpg", data)})
        assert response.status_code == 504 and "--timeout" in response.json()["error"]
        assert http.post("/predict", files={"data": ("a.jpg", data)}).status_code == 503
        slow.delay = 0.0
        time.sleep(2.5)
        assert http.post("/predict", files={"data": ("a.jpg", data)}).status_code == 200


class _FailingClassifier(_SlowClassifier):
    def submit(self, image) -> Future:
        future: Future = Future()
        future.set_exception(RuntimeError("inference failed: the device went away"))
        return future


def test_a_model_failing_on_a_good_image_is_500_not_the_clients_400(model_dir):
    failing = _FailingClassifier(EmotionClassifier.load(model_dir, cache_dir=None), delay=0.0)
    with BackgroundServer(create_app(failing, _options())) as running, httpx.Client(base_url=running.url) as http:
        response = http.post("/predict", files={"data": ("a.jpg", _jpeg(1))})
        assert response.status_code == 500 and "the device went away" in response.json()["error"]
        assert http.get("/v2/health/ready").status_code == 200


# -- the command ----------------------------------------------------------------------------------------------------
def _serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "emotion.runtime.serve", *args]


def test_cli_startup_errors_are_one_line_with_status_2(tmp_path, model_dir):
    result = subprocess.run(_serve_command("--model", str(tmp_path / "missing")), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"emotion-serve: error: model {tmp_path / 'missing'} does not exist"]

    result = subprocess.run(_serve_command("--model", str(model_dir), "--port", "70000"), capture_output=True, text=True,
                            timeout=60)  # the C library would wrap it to 4464
    assert result.returncode == 2 and "from 0 to 65535" in result.stderr

    with socket.create_server(("127.0.0.1", 0)) as taken:  # a port already in use
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            _serve_command("--model", str(model_dir), "--port", port, "--no-cache"), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"emotion-serve: error: cannot listen on 127.0.0.1:{port}:")


def test_cli_serves_and_stops_cleanly_on_sigterm(model_dir, reference, photos):
    process = subprocess.Popen(
        _serve_command("--model", str(model_dir), "--variant", "int8", "--model-name", "emotion-int8", "--port", "0",
                       "--no-cache", "--no-access-log", "--workers", "2"),
        stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        lines = []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "listening on " in line:
                url = line.split("listening on ")[1].split()[0]
        assert url and url.startswith("http://127.0.0.1:"), lines
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(100):
                try:
                    if http.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            name, data = photos[0]
            assert http.post("/predict", files={"data": (name, data)}).json()["label"] == reference.predict(data).label
            # --model-name renames the served model (to match an OpenVINO Model Server configuration).
            assert http.get("/v2/models/emotion-int8/ready").status_code == 200
            assert http.get("/v2/models/emotion/ready").status_code == 404
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=30)[1]
        assert process.returncode == 0, rest
        assert "Application shutdown complete" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_missing_serve_extra_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["--model", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["emotion-serve: error: uvicorn is not installed: pip install 'emotion-edge[serve]'"]


def test_runtime_imports_without_the_serve_extra():
    code = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'starlette', 'multipart'): sys.modules[name] = None\n"
        "import emotion.runtime, emotion.runtime.kserve, emotion.runtime.cli, emotion.runtime.serve\n"
        "assert not any(sys.modules.get(n) for n in ('fastapi', 'uvicorn', 'starlette'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_openvino_model_api_classifies_through_our_kserve_routes(server, reference, photos):
    """Model API's OVMSAdapter (the client OpenVINO Model Server users have) reads our metadata and outputs. It
    sends the array as given (it cannot add preprocessing to a remote model): the preprocessed RGB array."""
    pytest.importorskip("model_api")
    from model_api.adapters import OVMSAdapter
    from model_api.models import Model

    adapter = OVMSAdapter(f"{server.url.removeprefix('http://')}/v2/models/{reference.info.name}")
    model = Model.create_model(adapter, preload=True)
    for _, data in photos[:4]:
        array = reference.preprocess(data)
        p = reference.predict(array).probability
        top = model(array).top_labels[0]
        assert top.name == reference.info.labels[int(p >= 0.5)]  # Model API answers with argmax (0.5)
        assert float(top.confidence) == pytest.approx(max(p, 1.0 - p), abs=1e-5)


# -- trying to break it ------------------------------------------------------------------------------------------
def _slow_client(url: str, declared: int) -> socket.socket:
    """A connection that sends its headers and 10 bytes of a body of ``declared`` bytes, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                 b"Content-Length: %d\r\n\r\n" % declared + b"\xff" * 10)
    return sock


def test_slow_clients_hold_no_capacity_and_time_out(model_dir, photos):
    clf = EmotionClassifier.load(model_dir, mode="throughput", cache_dir=None)
    with BackgroundServer(create_app(clf, _options("--max-upload-mb", "32", "--read-timeout", "3"))) as running:
        held = [_slow_client(running.url, 1000) for _ in range(128)]
        held += [_slow_client(running.url, 20 * 2**20) for _ in range(13)]
        time.sleep(0.5)
        name, data = photos[0]
        with httpx.Client(base_url=running.url, timeout=30) as http:
            codes = [http.post("/predict", files={"data": (name, data)}).status_code for _ in range(20)]
        assert codes == [200] * 20
        held[0].settimeout(10)
        answer = b""
        while b"did not arrive" not in answer:  # --read-timeout: the held body is given up on
            chunk = held[0].recv(4096)
            assert chunk, answer
            answer += chunk
        answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 3 s" in answer
        for sock in held:
            sock.close()


def _bilevel_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def test_tiny_files_of_huge_images_are_refused_before_decoding(server, client, reference, photos):
    """A 1-bit 7999x7999 PNG is 8 KB and 64 Mpx to decode: work is counted in pixels, from the header."""
    huge = _bilevel_png(7999)
    assert len(huge) < 16_000
    name, data = photos[0]

    def bomb(_):
        with httpx.Client(base_url=server.url, timeout=60) as http:
            return http.post("/predict", files=[("data", (f"{i}.png", huge, "image/png")) for i in range(16)])

    with ThreadPoolExecutor(2) as pool:
        bombs = list(pool.map(bomb, range(2)))
    for response in bombs:  # the pixels come from the PNG headers: nothing was decoded
        assert response.status_code == 413
        assert response.json()["error"].startswith("the images hold 1023.7 Mpx; this server takes at most 64 Mpx")
    response = client.post("/predict", files={"data": ("one.png", huge, "image/png")})  # one fits the request budget
    assert response.status_code == 200, response.text
    assert client.post("/predict", files={"data": (name, data)}).json()["label"] == reference.predict(data).label


def test_openapi_documents_the_errors_the_server_returns(client):
    schema = client.get("/openapi.json").json()
    for path, method in (("/predict", "post"), ("/v2/models/{name}/infer", "post"), ("/v2/models/{name}", "get")):
        responses = schema["paths"][path][method]["responses"]
        assert {"400", "404", "408", "413", "503", "504"} <= set(responses) and "422" not in responses, path
    assert "data" in str(schema["components"]["schemas"])  # the multipart field, generated from the signature


def test_the_listening_socket_gives_connections_tcp_nodelay():
    """asyncio sets TCP_NODELAY only on IPPROTO_TCP sockets; without it every keep-alive response waits 40 ms."""
    from emotion.runtime.serve import listen

    with listen("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
