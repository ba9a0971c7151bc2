"""The inference backends on tiny real models: OpenVINO and ONNX Runtime agree, options reach OpenVINO, and every
model the runtime cannot use is refused with a one-line reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _tiny_models import reference_probability, save_ir, save_onnx, tiny_info
from emotion.runtime import EmotionClassifier, ModelLoadError
from emotion.runtime.backends import OnnxRuntimeBackend, OpenVINOBackend, open_backend
from test_classifier import images, photo


def test_backend_is_chosen_from_the_model_file(tiny_export, tiny_onnx, tiny_ir):
    assert isinstance(open_backend(tiny_ir), OpenVINOBackend)
    assert isinstance(open_backend(tiny_onnx), OnnxRuntimeBackend)
    assert isinstance(open_backend(tiny_onnx, "openvino"), OpenVINOBackend)  # OpenVINO reads ONNX too
    with pytest.raises(ValueError, match="unknown backend"):
        open_backend(tiny_ir, "tensorrt")


def test_onnxruntime_agrees_with_openvino(tiny_export, tiny_classifier, tmp_path):
    batch = images(12, seed=7)
    expected = tiny_classifier.predict_batch(batch)
    with EmotionClassifier.load(tiny_export, backend="onnxruntime", mode="throughput") as ort:
        assert ort.backend.path.name == "emotion.onnx" and ort.backend.name == "onnxruntime"
        assert ort.info == tiny_classifier.info
        np.testing.assert_allclose(ort.predict_batch(batch), expected, atol=1e-5)
        np.testing.assert_allclose([p.probability for p in ort.predict_many(batch)], expected, atol=1e-5)
        path = photo(tmp_path / "p.jpg")
        assert ort.predict(path).probability == pytest.approx(tiny_classifier.predict(path).probability, abs=1e-5)
    with EmotionClassifier.load(tiny_export / "emotion.onnx", backend="openvino", cache_dir=None) as ov_onnx:
        assert ov_onnx.backend.name == "openvino" and ov_onnx.info == tiny_classifier.info  # metadata_props read
        np.testing.assert_allclose(ov_onnx.predict_batch(batch), expected, atol=1e-5)
    with pytest.raises(ModelLoadError, match="f32 on CPU only"):
        EmotionClassifier.load(tiny_export, backend="onnxruntime", precision="bf16")


def test_precision_mode_and_cache_reach_openvino(tiny_ir, tmp_path):
    with EmotionClassifier.load(tiny_ir, cache_dir=None) as clf:
        described = clf.describe()
        assert described["precision"] == described["inference_precision"] == "f32"  # default: parity with Keras
        assert described["performance_hint"] == "LATENCY" and described["cache_dir"] is None
        assert described["input_size"] == [32, 40] and described["labels"] == ["Negative", "Positive"]
    cache = tmp_path / "cache"
    with EmotionClassifier.load(tiny_ir, mode="throughput", cache_dir=cache, workers=3) as clf:
        described = clf.describe()
        assert described["performance_hint"] == "THROUGHPUT" and described["requests"] >= 1
        assert described["cache_dir"] == str(cache) and described["workers"] == 3
    assert any(cache.iterdir())  # OpenVINO wrote its compiled blob
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with EmotionClassifier.load(tiny_ir, precision="bf16", cache_dir=None) as clf:
            assert clf.describe()["inference_precision"] == "bf16" and clf.predict(images(1)[0]).ok
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


def test_a_fixed_batch_model_runs_image_by_image(tmp_path):
    with EmotionClassifier.load(save_ir(tmp_path / "static", batch=2), cache_dir=None) as clf:
        batch = images(5)
        np.testing.assert_allclose(clf.predict_batch(batch), reference_probability(batch), atol=1e-5)
        assert clf.predict(batch[0]).probability == pytest.approx(reference_probability(batch[:1])[0], abs=1e-5)


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-models")
    models = {
        "no_metadata": save_ir(root / "no_metadata", metadata=None),
        "no_size": save_ir(root / "no_size", metadata={k: v for k, v in tiny_info().to_strings().items() if k != "orig_height"}),
        "float_input": save_ir(root / "float_input", input_type="f32"),
        "nchw_input": save_ir(root / "nchw_input", layout="NCHW"),
        "other_name": save_ir(root / "other_name", input_name="input_1"),
        "size_mismatch": save_ir(root / "size_mismatch", metadata=tiny_info(input_height=64).to_strings()),
        "bad_filter": save_ir(root / "bad_filter", metadata=tiny_info(resize_filter="hamming").to_strings()),
        "nan_threshold": save_ir(root / "nan_threshold", metadata=tiny_info(threshold=float("nan")).to_strings()),
        "onnx_no_metadata": save_onnx(root / "plain.onnx", metadata=None),
    }
    for name, content in (("corrupt", b"this is not XML at all"), ("truncated", models["no_metadata"].read_bytes()[:300])):
        (root / name).mkdir()
        (root / name / "model.xml").write_bytes(content)
        shutil.copy(models["no_metadata"].with_suffix(".bin"), root / name / "model.bin")
        models[name] = root / name / "model.xml"
    (root / "no_bin").mkdir()
    models["no_bin"] = Path(shutil.copy(models["float_input"], root / "no_bin" / "model.xml"))
    models["junk_onnx"] = root / "junk.onnx"
    models["junk_onnx"].write_text("junk")
    return models


@pytest.mark.parametrize("name, backend, message", [
    ("no_metadata", None, "no emotion-edge metadata"),
    ("no_size", None, "metadata has no 'orig_height'"),
    ("float_input", None, "is float32 [?, 32, 40, 3]; expected uint8 NHWC"),
    ("nchw_input", None, "is uint8 [?, 3, 32, 40]; expected uint8 NHWC"),
    ("other_name", None, "'input_1' is uint8"),
    ("size_mismatch", None, "metadata says 64x40"),
    ("bad_filter", None, "unknown resize filter 'hamming'"),
    ("nan_threshold", None, "expected a probability from 0 to 1"),
    ("corrupt", None, "not an OpenVINO IR"),
    ("truncated", None, "cannot read the model"),
    ("no_bin", None, "weights file model.bin is missing"),
    ("junk_onnx", None, "not an ONNX model"),
    ("junk_onnx", "openvino", "not an ONNX model"),
    ("onnx_no_metadata", None, "no emotion-edge metadata"),
])
def test_unusable_models_give_one_line_reasons(bad_models, name, backend, message):
    with pytest.raises(ModelLoadError) as caught:
        EmotionClassifier.load(bad_models[name], backend=backend, cache_dir=None)
    text = str(caught.value)
    assert message in text and str(bad_models[name]) in text
    assert "\n" not in text and "Exception from" not in text


def test_unknown_device_is_a_one_line_error(tiny_ir):
    with pytest.raises(ModelLoadError, match="cannot compile the model for NOPE") as caught:
        EmotionClassifier.load(tiny_ir, device="NOPE", cache_dir=None)
    assert "\n" not in str(caught.value)
