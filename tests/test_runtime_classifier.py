"""EmotionClassifier on tiny real OpenVINO and ONNX models: inputs, batches, streams, backends, model errors."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _tiny_models import HEIGHT, WIDTH, reference_probability, save_ir, save_onnx, tiny_info
from emotion.runtime.backends import InferenceError, ModelLoadError
from emotion.runtime.classifier import EmotionClassifier, Prediction
from emotion.runtime.files import Candidate
from emotion.runtime.locate import default_model, latest_export, resolve_model
from emotion.runtime.preprocess import ImageDecodeError, preprocess

SHARED_DATA = Path("/work/shared/data")


def _images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 256, (count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    # Spread the answers: give each image its own dominant colour balance.
    batch[..., 0] = (batch[..., 0] * rng.uniform(0.2, 1.0, (count, 1, 1))).astype(np.uint8)
    return batch


def _photo(path: Path, seed: int = 1, size=(120, 90)) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[: size[1] // 2, :, 2] = 30
    Image.fromarray(pixels, "RGB").save(path, quality=92)
    return path


# -- inputs ------------------------------------------------------------------------------------------------
def test_path_bytes_file_pil_and_array_agree(tiny_classifier, tmp_path):
    clf = tiny_classifier
    path = _photo(tmp_path / "photo.jpg")
    data = path.read_bytes()
    array = preprocess(path, clf.spec)
    results = [
        clf.predict(path),
        clf.predict(str(path)),
        clf.predict(data),
        clf.predict(io.BytesIO(data)),
        clf.predict(Image.open(path)),
        clf.predict(array),
    ]
    probabilities = {r.probability for r in results}
    assert len(probabilities) == 1  # identical, not merely close: one preprocessing, one model
    (probability,) = probabilities
    assert probability == pytest.approx(reference_probability(array[None])[0], abs=1e-5)
    assert all(r.label == clf.info.label_for(probability) and r.ok for r in results)
    assert results[0].path == path and results[1].path == str(path) and results[2].path is None
    assert clf.predict_probability(data) == probability


def test_predict_batch_matches_the_reference_and_single_predictions(tiny_classifier):
    clf = tiny_classifier
    batch = _images(9)
    probabilities = clf.predict_batch(batch)
    assert probabilities.shape == (9,) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, reference_probability(batch), atol=1e-5)
    singles = [clf.predict(image).probability for image in batch]
    np.testing.assert_allclose(singles, probabilities, atol=1e-7)
    assert clf.predict_batch(np.zeros((0, HEIGHT, WIDTH, 3), np.uint8)).shape == (0,)
    np.testing.assert_allclose(clf.predict_batch(batch[:, ::1, :, :][::2]), probabilities[::2], atol=1e-7)
    with pytest.raises(ValueError, match="uint8 array of shape"):
        clf.predict_batch(batch.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 array of shape"):
        clf.predict_batch(batch[:, :16])


def test_read_only_and_odd_arrays(tiny_classifier):
    """Read-only arrays (what np.asarray gives for a PIL image) are copied once; OpenVINO shares the copy."""
    clf = tiny_classifier
    images = _images(6, seed=11)
    expected = reference_probability(images)
    frozen = [np.frombuffer(image.tobytes(), np.uint8).reshape(image.shape) for image in images]
    assert not frozen[0].flags.writeable
    np.testing.assert_allclose([clf.predict(f).probability for f in frozen], expected, atol=1e-5)
    np.testing.assert_allclose([f.result(timeout=10) for f in [clf.submit(f) for f in frozen]], expected, atol=1e-5)
    np.testing.assert_allclose([p.probability for p in clf.predict_many(frozen)], expected, atol=1e-5)
    image = images[0]
    expected = clf.predict(image).probability
    strided = np.asfortranarray(image)
    assert clf.predict(strided).probability == expected
    with pytest.raises(ImageDecodeError, match="uint8"):
        clf.predict(image.astype(np.float32))
    with pytest.raises(ImageDecodeError):
        clf.predict(b"this is not an image")


def test_submit_is_thread_safe_and_asyncio_friendly(tiny_classifier):
    clf = tiny_classifier
    batch = _images(64, seed=3)
    expected = reference_probability(batch)
    with ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(clf.submit, batch))
    np.testing.assert_allclose([f.result(timeout=10) for f in futures], expected, atol=1e-5)

    async def main():
        return await asyncio.gather(*(asyncio.wrap_future(clf.submit(image)) for image in batch[:8]))

    np.testing.assert_allclose(asyncio.run(main()), expected[:8], atol=1e-5)
    assert clf.submit(batch[:1]).result(timeout=10) == pytest.approx(expected[0], abs=1e-5)  # (1, H, W, 3)
    with pytest.raises(ValueError, match="preprocess"):
        clf.submit(np.zeros((10, 10, 3), np.uint8))


# -- streams -------------------------------------------------------------------------------------------
def test_predict_many_keeps_order_with_a_bounded_window(tiny_classifier):
    clf = tiny_classifier
    pool = _images(50, seed=5)
    expected = reference_probability(pool)
    produced = 0
    window = 12

    def items():
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield b"garbage" if i % 97 == 13 else pool[i % 50]

    seen = 0
    for i, prediction in enumerate(clf.predict_many(items(), window=window, workers=2)):
        assert produced - i <= window  # never more than `window` items read ahead of what was yielded
        if i % 97 == 13:
            assert prediction.error == "not an image Pillow can identify" and prediction.label is None
        else:
            assert prediction.probability == pytest.approx(expected[i % 50], abs=1e-5), i
        seen += 1
    assert seen == produced == 1000


def test_predict_many_mixed_sources_and_errors_keep_going(tiny_classifier, tmp_path):
    clf = tiny_classifier
    photo = _photo(tmp_path / "a.jpg")
    missing = tmp_path / "missing.jpg"
    items = [
        photo,
        b"",
        photo.read_bytes(),
        missing,
        Candidate(tmp_path / "x.jpg", "not an image (content is not a known image format)"),
        Image.open(photo),
        np.zeros((5, 5), np.float64),
        Candidate(photo),
        str(photo),
    ]
    results = list(clf.predict_many(items, workers=3))
    assert len(results) == len(items)
    reference = clf.predict(photo).probability
    ok = [0, 2, 5, 7, 8]
    assert [i for i, r in enumerate(results) if r.ok] == ok
    assert all(results[i].probability == reference for i in ok)
    assert results[1].error == "empty data (0 bytes)"
    assert "not found" in results[3].error and results[3].path == missing
    assert results[4].error.startswith("not an image") and results[4].path == tmp_path / "x.jpg"
    assert "uint8" in results[6].error
    assert results[7].path == photo and results[8].path == str(photo)
    assert results[0].to_dict() == {"path": str(photo), "label": results[0].label,
                                    "probability": reference, "error": None}


def test_abandoned_stream_stops_reading(tiny_classifier):
    clf = tiny_classifier
    produced = 0

    def endless():
        nonlocal produced
        image = _images(1)[0]
        while True:
            produced += 1
            yield image

    stream = clf.predict_many(endless(), window=8, workers=2)
    first = [next(stream) for _ in range(5)]
    stream.close()
    assert all(p.ok for p in first) and produced <= 5 + 8
    assert clf.predict(_images(1)[0]).ok  # the classifier is still usable


# -- backends ------------------------------------------------------------------------------------------
def test_onnxruntime_backend_agrees_with_openvino(tiny_export, tiny_classifier, tmp_path):
    batch = _images(12, seed=7)
    expected = tiny_classifier.predict_batch(batch)
    with EmotionClassifier.load(tiny_export, backend="onnxruntime", mode="throughput") as ort:
        assert ort.path.name == "emotion.onnx" and ort.backend.name == "onnxruntime"
        assert ort.info == tiny_classifier.info
        np.testing.assert_allclose(ort.predict_batch(batch), expected, atol=1e-5)
        np.testing.assert_allclose([p.probability for p in ort.predict_many(batch)], expected, atol=1e-5)
        assert ort.submit(batch[0]).result(timeout=10) == pytest.approx(expected[0], abs=1e-5)
        photo = _photo(tmp_path / "p.jpg")
        assert ort.predict(photo).probability == pytest.approx(tiny_classifier.predict(photo).probability, abs=1e-5)
    # OpenVINO reads the ONNX file too, metadata included.
    with EmotionClassifier.load(tiny_export / "emotion.onnx", cache_dir=None) as ov_onnx:
        np.testing.assert_allclose(ov_onnx.predict_batch(batch), expected, atol=1e-5)
    with pytest.raises(ModelLoadError, match="f32 only"):
        EmotionClassifier.load(tiny_export, backend="onnxruntime", precision="bf16")


def test_precision_mode_and_cache_reach_openvino(tiny_ir, tmp_path):
    with EmotionClassifier.load(tiny_ir, cache_dir=None) as clf:
        described = clf.describe()
        assert described["precision"] == "f32" and described["inference_precision"] == "f32"  # default: parity
        assert described["performance_hint"] == "LATENCY" and described["cache_dir"] is None
        assert described["input_size"] == [HEIGHT, WIDTH] and described["labels"] == ["Negative", "Positive"]
    cache = tmp_path / "cache"
    with EmotionClassifier.load(tiny_ir, mode="throughput", cache_dir=cache) as clf:
        described = clf.describe()
        assert described["performance_hint"] == "THROUGHPUT" and clf.backend.parallelism >= 1
        assert described["cache_dir"] == str(cache)
    assert any(cache.iterdir())  # OpenVINO wrote its compiled blob
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with EmotionClassifier.load(tiny_ir, precision="bf16", cache_dir=None) as clf:
            assert clf.describe()["inference_precision"] == "bf16"
            assert clf.predict(_images(1)[0]).ok
    with pytest.raises(ValueError, match="unknown precision"):
        EmotionClassifier.load(tiny_ir, precision="int4", cache_dir=None)
    with pytest.raises(ValueError, match="unknown mode"):
        EmotionClassifier.load(tiny_ir, mode="fast", cache_dir=None)


def test_default_cache_location_follows_the_environment(tiny_ir, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_CACHE_DIR", str(tmp_path / "envcache"))
    with EmotionClassifier.load(tiny_ir) as clf:
        assert clf.describe()["cache_dir"] == str(tmp_path / "envcache")
    monkeypatch.setenv("EMOTION_CACHE_DIR", "")
    with EmotionClassifier.load(tiny_ir) as clf:
        assert clf.describe()["cache_dir"] is None


def test_closed_classifier_refuses_work(tiny_ir):
    clf = EmotionClassifier.load(tiny_ir, cache_dir=None)
    image = _images(1)[0]
    assert clf.submit(image).result(timeout=10) > 0
    clf.close()
    clf.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        clf.predict(image)
    with pytest.raises(RuntimeError, match="closed"):
        clf.submit(image)
    assert [p.error for p in clf.predict_many([image])] == ["inference not started: the classifier is closed"]


def test_failed_async_inference_fails_its_future_and_never_hangs():
    """OpenVINO skips the callback of a failed inference; the feeder must still settle every future."""
    import openvino as ov
    import openvino.opset13 as ops

    from emotion.runtime.backends import _AsyncQueueFeeder

    # Any spatial size is accepted at the input, but the graph needs exactly 32x40: other sizes fail at run time.
    param = ops.parameter([-1, -1, -1, 3], ov.Type.u8, name="image")
    pixels = ops.reshape(ops.convert(param, ov.Type.f32), np.array([-1, HEIGHT, WIDTH, 3], np.int64), False)
    mean = ops.reduce_mean(pixels, np.array([1, 2, 3], np.int64), keep_dims=False)
    model = ov.Model([ops.result(ops.unsqueeze(mean, np.array([1], np.int64)))], [param], "fails_on_size")
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    feeder = _AsyncQueueFeeder(ov, compiled, 2, 0)
    try:
        good = np.full((1, HEIGHT, WIDTH, 3), 7, np.uint8)
        assert feeder.submit(good).result(timeout=10) == pytest.approx(7.0)
        bad = np.zeros((1, 8, 8, 3), np.uint8)
        started = time.monotonic()
        with pytest.raises(InferenceError, match="inference failed"):
            feeder.submit(bad).result(timeout=10)  # alone: found by polling, not by the next submit
        futures = [feeder.submit(good if i % 3 else bad) for i in range(12)]
        for i, future in enumerate(futures):
            if i % 3 == 0:
                with pytest.raises(InferenceError):
                    future.result(timeout=10)
            else:  # settled either way (a CPU request that failed may poison later ones), never left hanging
                assert future.exception(timeout=10) is None or isinstance(future.exception(), InferenceError)
        assert time.monotonic() - started < 10
    finally:
        feeder.close()


# -- model locations -------------------------------------------------------------------------------------
def test_model_locations_resolve(tiny_export, tmp_path):
    fp32 = tiny_export / "emotion" / "1" / "model.xml"
    assert resolve_model(fp32) == fp32
    assert resolve_model(fp32.with_suffix(".bin")) == fp32
    assert resolve_model(fp32.parent) == fp32  # version folder
    assert resolve_model(fp32.parent.parent) == fp32  # repository folder
    assert resolve_model(tiny_export) == fp32  # export folder: fp32 by default
    assert resolve_model(tiny_export, variant="int8") == tiny_export / "emotion-int8" / "1" / "model.xml"
    assert resolve_model(tiny_export, backend="onnxruntime") == tiny_export / "emotion.onnx"
    with pytest.raises(ModelLoadError, match="int8 ONNX"):
        resolve_model(tiny_export, backend="onnxruntime", variant="int8")
    with pytest.raises(ModelLoadError, match="onnxruntime backend needs an .onnx"):
        resolve_model(fp32, backend="onnxruntime")
    with pytest.raises(ModelLoadError, match="variant"):
        resolve_model(fp32, variant="fp16")
    with pytest.raises(ValueError, match="unknown variant"):
        resolve_model(tiny_export, variant="fp8")
    # The highest version of a repository wins; hidden work folders are ignored.
    repo = tmp_path / "repo" / "mood"
    for version in ("1", "3", "20"):
        shutil.copytree(fp32.parent, repo / version)
    (repo / "notes").mkdir()
    assert resolve_model(repo) == repo / "20" / "model.xml"
    int8_only = tmp_path / "int8-only"
    shutil.copytree(tiny_export / "emotion-int8", int8_only / "emotion-int8")
    shutil.copy(tiny_export / "export_report.json", int8_only)
    assert resolve_model(int8_only) == int8_only / "emotion-int8" / "1" / "model.xml"  # no fp32 exported
    with pytest.raises(ModelLoadError, match="no fp32 model emotion/ in the export; variants here: int8"):
        resolve_model(int8_only, variant="fp32")
    for variant, precision in (("fp16", "fp16"), ("int8", "int8"), (None, "fp32")):
        with EmotionClassifier.load(tiny_export, variant=variant, cache_dir=None) as clf:
            assert clf.info.precision == precision


def test_latest_export_and_default_model(tiny_export, tmp_path, monkeypatch):
    exports = tmp_path / "exports"
    old, new = exports / "old", exports / "new"
    shutil.copytree(tiny_export, old)
    shutil.copytree(tiny_export, new)
    os.utime(old / "export_report.json", (1_000_000_000, 1_000_000_000))
    (exports / ".new2.x.partial").mkdir()  # an export being written: ignored
    assert latest_export(exports) == new
    assert resolve_model(exports) == new / "emotion" / "1" / "model.xml"
    assert default_model({}, cwd=tmp_path) == new
    assert default_model({"EMOTION_MODEL": "/somewhere/model.xml"}, cwd=tmp_path) == Path("/somewhere/model.xml")
    with pytest.raises(ModelLoadError, match="emotion-export RUN --out exports/NAME"):
        default_model({}, cwd=tmp_path / "nothing-here")


# -- model errors --------------------------------------------------------------------------------------
def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Exception from" not in message
    return message


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-models")
    models = {
        "no_metadata": save_ir(root / "no_metadata", metadata=None),
        "float_input": save_ir(root / "float_input", input_type="f32"),
        "nchw_input": save_ir(root / "nchw_input", layout="NCHW"),
        "other_name": save_ir(root / "other_name", input_name="input_1"),
        "size_mismatch": save_ir(root / "size_mismatch", metadata=tiny_info(input_height=64).to_strings()),
        "static_batch": save_ir(root / "static_batch", batch=2),
        "onnx_no_metadata": save_onnx(root / "plain.onnx", metadata=None),
    }
    corrupt = root / "corrupt" / "model.xml"
    corrupt.parent.mkdir()
    corrupt.write_text("this is not XML at all")
    models["corrupt"] = corrupt
    truncated = root / "truncated" / "model.xml"
    truncated.parent.mkdir()
    truncated.write_bytes(models["no_metadata"].read_bytes()[:300])
    shutil.copy(models["no_metadata"].with_suffix(".bin"), truncated.with_suffix(".bin"))
    models["truncated"] = truncated
    no_bin = root / "no_bin" / "model.xml"
    no_bin.parent.mkdir()
    shutil.copy(models["float_input"], no_bin)
    models["no_bin"] = no_bin
    junk_onnx = root / "junk.onnx"
    junk_onnx.write_text("junk")
    models["junk_onnx"] = junk_onnx
    return models


@pytest.mark.parametrize(
    "name, backend, message",
    [
        ("no_metadata", "openvino", "no emotion-edge metadata"),
        ("float_input", "openvino", "is float32 [?, 32, 40, 3]; expected uint8 NHWC"),
        ("nchw_input", "openvino", "is uint8 [?, 3, 32, 40]; expected uint8 NHWC"),
        ("other_name", "openvino", "'input_1' is uint8"),
        ("size_mismatch", "openvino", "metadata says 64x40"),
        ("corrupt", "openvino", "not an OpenVINO IR"),
        ("truncated", "openvino", "cannot read the model"),
        ("no_bin", "openvino", "weights file model.bin is missing"),
        ("junk_onnx", "onnxruntime", "not an ONNX model"),
        ("junk_onnx", "openvino", "not an ONNX model"),
        ("onnx_no_metadata", "onnxruntime", "no emotion-edge metadata"),
    ],
)
def test_unusable_models_give_one_line_reasons(bad_models, name, backend, message):
    with pytest.raises(ModelLoadError) as exc_info:
        EmotionClassifier.load(bad_models[name], backend=backend, cache_dir=None)
    assert message in _one_line(exc_info)
    assert str(bad_models[name]) in str(exc_info.value)


def test_missing_model_and_unknown_device(tiny_ir, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as exc_info:
        EmotionClassifier.load(tmp_path / "nope.xml")
    _one_line(exc_info)
    with pytest.raises(ModelLoadError, match="cannot compile the model for NOPE") as exc_info:
        EmotionClassifier.load(tiny_ir, device="NOPE", cache_dir=None)
    _one_line(exc_info)
    with pytest.raises(ModelLoadError, match="holds no model"):
        EmotionClassifier.load(tmp_path)


def test_fixed_batch_model_still_takes_any_batch(bad_models):
    with EmotionClassifier.load(bad_models["static_batch"], cache_dir=None) as clf:
        assert clf.backend.static_batch == 2
        batch = _images(5)
        np.testing.assert_allclose(clf.predict_batch(batch), reference_probability(batch), atol=1e-5)
        assert clf.predict(batch[0]).probability == pytest.approx(reference_probability(batch[:1])[0], abs=1e-5)
        assert clf.submit(batch[1]).result(timeout=10) == pytest.approx(reference_probability(batch[1:2])[0], abs=1e-5)


# -- real photos -----------------------------------------------------------------------------------------
def test_real_photos_stream_like_single_predictions(tiny_classifier):
    folders = [SHARED_DATA / "oasis-dev", SHARED_DATA / "twitter-sample"]
    files = [p for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*.jpg"))]
    if not files:
        pytest.skip("no real photos under /work/shared/data on this machine")
    sample = files[::12][:48]
    streamed = list(tiny_classifier.predict_many(sample, workers=2))
    assert [p.path for p in streamed] == sample
    assert all(p.ok for p in streamed), [p.error for p in streamed if not p.ok]
    assert [p.probability for p in streamed] == [tiny_classifier.predict(p).probability for p in sample]
    assert isinstance(streamed[0], Prediction)
