"""emotion-export end to end on a tiny model loaded back from disk, with real tf2onnx, OpenVINO and NNCF.

One module-scoped training run and one full export are shared by the tests (the file runs in about two
minutes on two busy cores). The seed CNN needs at least 91 pixels a side (four stride-2 convolutions and two
pools), so the tiny model is 96x120, the seed's 4:5 aspect ratio.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion.runtime.metadata import INPUT_NAME, OUTPUT_PROBABILITY, OUTPUT_SCORES, ModelInfo

HEIGHT, WIDTH = 96, 120
THRESHOLD = 0.42  # not 0.5 on purpose: our labels use it, Model API's argmax cannot
SCRIPT = Path(sys.executable).with_name("emotion-export")
EXPORT_CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "emotion.export.cli"]


def _write_images(root: Path, per_class: int = 24, seed: int = 1) -> Path:
    """Smooth colour fields, bluish-dark Negative and warm Positive, as JPEGs of a size != the model's."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 1, 120)[:, None, None]
    xs = np.linspace(0, 1, 150)[None, :, None]
    for label, base in (("Negative", (40, 60, 150)), ("Positive", (220, 160, 60))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            top = np.array(base) + rng.normal(0, 40, 3)
            other = rng.uniform(0, 255, 3)
            pixels = top * (1 - ys) + other * ys * xs + rng.normal(0, 10, (120, 150, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / label / f"{i:03d}.jpg", quality=90)
    return root


def _train(model, x: np.ndarray, y: np.ndarray, epochs: int = 3) -> None:
    import keras

    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(x.astype("float32") / 255.0, y.astype("float32"), epochs=epochs, batch_size=8, verbose=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A training run folder as emotion-train writes it: model.keras (ModelInfo inside), split.csv, run.json."""
    from emotion.train import data, models
    from emotion.train.model_io import save_model

    root = tmp_path_factory.mktemp("export-run")
    data_root = _write_images(root / "data")
    split = data.stratified_split(data.load_dataset(data_root))
    info = ModelInfo(input_height=HEIGHT, input_width=WIDTH, threshold=THRESHOLD)
    x, y, _ = data.load_images(split.train, info.preprocess_spec)
    model = models.build("seed", (HEIGHT, WIDTH))
    _train(model, x, y)
    run = root / "run"
    run.mkdir()
    save_model(model, run / "model.keras", info)
    data.write_manifest(split, run)
    (run / "run.json").write_text(json.dumps({"data_root": str(data_root)}), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The full export (fp32, fp16, int8) through the function API: (report, out_dir)."""
    from emotion.export import export_model

    out = tmp_path_factory.mktemp("export-out") / "models"
    report = export_model(tiny_run, out, progress=False)
    return report, out


def _ir(out: Path, precision: str) -> Path:
    repo = "emotion" if precision == "fp32" else f"emotion-{precision}"
    return out / repo / "1" / "model.xml"


# -- layout, report ---------------------------------------------------------------------------------------------


def test_repository_layout_and_report(exported, tiny_run):
    report, out = exported
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "emotion-fp16/1/model.bin", "emotion-fp16/1/model.xml",
        "emotion-int8/1/model.bin", "emotion-int8/1/model.xml",
        "emotion.onnx", "emotion/1/model.bin", "emotion/1/model.xml", "export_report.json",
    ]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no temporary siblings left"
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["ok"] is True and report.ok and report.exit_code == 0
    assert saved["source_sha256"] == hashlib.sha256((tiny_run / "model.keras").read_bytes()).hexdigest()
    assert set(saved["versions"]) >= {"tensorflow", "keras", "tf2onnx", "onnx", "openvino", "nncf"}
    assert set(saved["timings_seconds"]) >= {"load_keras", "onnx", "openvino_fp32", "openvino_fp16",
                                             "openvino_int8", "verify", "total"}
    for variant in ("onnx", "fp32", "fp16", "int8"):
        assert saved["files"][variant]["bytes"] > 0
    assert "training-split" in saved["quantization"]["calibration"]["source"]
    assert "validation-split" in saved["verification"]["data"]["source"]
    assert report.table().count("\n") > 5


# -- parity -------------------------------------------------------------------------------------------------------


def test_fp32_matches_keras_and_every_variant_is_measured(exported):
    from emotion.export.openvino_export import cpu_supports_bf16
    from emotion.export.parity import Verdict

    report, _ = exported
    v = report.verification
    assert v.parity_ok, v.problems
    checks = {c.format: c for c in v.checks}
    expected = {"keras", "onnxruntime", "openvino-fp32", "openvino-fp16", "openvino-int8"}
    assert set(checks) == expected | ({"openvino-bf16"} if cpu_supports_bf16() else set())
    for name in ("onnxruntime", "openvino-fp32"):
        assert checks[name].verdict is Verdict.PASS and checks[name].limits.min_agreement == 100.0
        assert checks[name].parity.max_abs_dp <= 1e-4
        assert checks[name].parity.decided_agreement == 100.0
    for check in checks.values():
        assert check.problems == [] and check.parity.images == v.data["images"] > 0
        assert None not in (check.parity.roc_auc, check.parity.accuracy, check.parity.balanced_accuracy)
    assert checks["openvino-fp16"].verdict is Verdict.MEASURED
    assert checks["openvino-fp16"].parity.max_abs_dp < 1e-2 and checks["openvino-int8"].parity.max_abs_dp < 0.2
    assert "| `openvino-int8` |" in report.table()


def test_every_exported_file_answers_like_keras_through_the_runtime(exported, tiny_run):
    from emotion.export import keras_predict
    from emotion.export.formats import FORMATS
    from emotion.export.verify import runtime_predict
    from emotion.train.model_io import load_model

    _, out = exported
    model, info = load_model(tiny_run)
    batch = (np.random.default_rng(3).random((5, HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    reference = keras_predict(model, batch)
    assert reference.shape == (5,) and reference.dtype == np.float32
    for name, path in (("openvino-fp32", _ir(out, "fp32")), ("onnxruntime", out / "emotion.onnx")):
        np.testing.assert_allclose(runtime_predict(FORMATS[name], path, batch, info), reference, atol=1e-4)
    with pytest.raises(ValueError, match="not an export of this model"):
        runtime_predict(FORMATS["openvino-fp32"], _ir(out, "fp32"), batch, info.replace(threshold=0.5))
    with pytest.raises(ValueError):
        keras_predict(model, batch.astype(np.float32))


def test_parity_gate_counts_a_flip_at_the_threshold_as_a_tie_not_a_disagreement():
    from emotion.export.parity import DEFAULT_LIMITS, Verdict, compare, judge

    reference = np.array([0.42 + 3e-8, 0.9, 0.1])
    labels = np.array([1, 1, 0])
    tie = compare(reference - 6e-8, reference, labels, THRESHOLD)  # the first image moves below the threshold
    assert tie.label_agreement < 100.0 and tie.ties == 1 and tie.decided_agreement == 100.0
    assert judge("onnxruntime", "fp32", tie, DEFAULT_LIMITS).verdict is Verdict.PASS
    flipped = compare(np.array([0.43, 0.41, 0.1]), np.array([0.43, 0.43, 0.1]), labels, THRESHOLD)
    verdict = judge("onnxruntime", "fp32", flipped, DEFAULT_LIMITS)
    assert verdict.verdict is Verdict.FAIL and any("agreement" in p for p in verdict.problems)
    assert judge("openvino-int8", "int8", flipped, {}).verdict is Verdict.MEASURED
    assert judge("openvino-fp32", "fp32", None, DEFAULT_LIMITS, error="cannot load").verdict is Verdict.FAIL
    broken = compare(np.array([np.nan, 0.9, np.inf]), reference, labels, THRESHOLD)  # NaN compares as "not above"
    verdict = judge("openvino-fp32", "fp32", broken, DEFAULT_LIMITS)
    assert broken.non_finite == 2 and verdict.verdict is Verdict.FAIL and "2 non-finite outputs" in verdict.problems
    assert judge("openvino-int8", "int8", broken, DEFAULT_LIMITS).verdict is Verdict.FAIL


def test_calibration_from_a_folder_leaves_out_the_runs_validation_images(tiny_run):
    """They measure the INT8 model afterwards: calibrating on them would flatter it."""
    from emotion.export.data import calibration_set
    from emotion.runtime.preprocess import PreprocessSpec
    from emotion.train.run_folder import RunFolder

    run = RunFolder(tiny_run)
    split = run.split()
    calibration = calibration_set(PreprocessSpec(32, 40), split, run.data_root(), size=1000, progress=False)
    assert len(calibration) == len(split.train) > 0
    assert f"({len(split.validation)} validation-split images left out)" in calibration.description


def test_a_gate_over_no_decodable_image_is_refused(tiny_run, tmp_path):
    from emotion.export.common import ExportError
    from emotion.export.data import verification_set
    from emotion.runtime.preprocess import PreprocessSpec
    from emotion.train.run_folder import RunFolder

    data = tmp_path / "data"
    for label in ("Negative", "Positive"):
        (data / label).mkdir(parents=True)
        (data / label / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)  # a JPEG header, no image
    with pytest.raises(ExportError, match="none of the 2 images from --data"):
        verification_set(PreprocessSpec(32, 40), RunFolder(tiny_run).split(), data, progress=False)


# -- file contents ------------------------------------------------------------------------------------------------


def test_fp32_ir_really_holds_f32_weights(exported):
    from emotion.export.openvino_export import constant_types

    _, out = exported
    fp32, fp16 = constant_types(_ir(out, "fp32")), constant_types(_ir(out, "fp16"))
    assert fp32["f32"] > 0 and fp32["f16"] == 0
    assert fp16["f16"] > 0
    fp32_bin = _ir(out, "fp32").with_suffix(".bin").stat().st_size
    fp16_bin = _ir(out, "fp16").with_suffix(".bin").stat().st_size
    assert fp16_bin < 0.6 * fp32_bin


def test_int8_ir_is_quantized_but_its_output_unit(exported):
    import openvino as ov

    from emotion.export.openvino_export import constant_types, op_types

    report, out = exported
    assert op_types(_ir(out, "int8"))["FakeQuantize"] > 0
    assert constant_types(_ir(out, "int8"))["i8"] > 0
    assert _ir(out, "int8").with_suffix(".bin").stat().st_size < 0.4 * _ir(out, "fp32").with_suffix(".bin").stat().st_size
    # The sigmoid unit stays in float (fed by no fake-quantize, weights f32 constants); bias correction is the full one.
    model = ov.Core().read_model(_ir(out, "int8"))
    unit = next(op for op in model.get_ops()
                if op.get_type_name() == "MatMul" and "probability" in op.get_friendly_name())
    assert [v.get_node().get_type_name() != "FakeQuantize" for v in unit.input_values()] == [True, True]
    assert unit.input_value(1).get_node().get_type_name() == "Constant"
    assert report.quantization["bias_correction"] == "full"


def test_rt_info_round_trips_through_model_info(exported, tiny_run):
    import onnx
    import openvino as ov

    from emotion.runtime.metadata import RT_INFO_SECTION
    from emotion.train.model_io import read_info

    _, out = exported
    trained = read_info(tiny_run)
    for precision in ("fp32", "fp16", "int8"):
        section = ov.Core().read_model(_ir(out, precision)).get_rt_info()[RT_INFO_SECTION]
        strings = {key: section[key].astype(str) for key in section.keys()}
        info = ModelInfo.from_strings(strings)
        assert info.precision == precision
        assert info.threshold == THRESHOLD and info.labels == trained.labels
        assert (info.input_height, info.input_width) == (HEIGHT, WIDTH)
        assert len(info.source_sha256) == 64
        # what OpenVINO Model API reads
        assert strings["model_type"] == "Classification" and strings["embedded_processing"] == "False"
        assert strings["reverse_input_channels"] == "True" and strings["scale_values"] == strings["mean_values"] == ""
        assert (strings["orig_height"], strings["orig_width"]) == (str(HEIGHT), str(WIDTH))
    props = {p.key: p.value for p in onnx.load(out / "emotion.onnx", load_external_data=False).metadata_props}
    onnx_info = ModelInfo.from_strings({k: v for k, v in props.items() if " " not in k})  # flat keys: ours
    assert onnx_info.precision == "fp32" and onnx_info.threshold == THRESHOLD
    assert all(props[f"model_info {k}"] == v for k, v in props.items() if " " not in k)  # Model API's keys


def test_onnx_contract_uint8_image_dynamic_batch(exported):
    import onnx
    import onnxruntime as ort

    _, out = exported
    proto = onnx.load(out / "emotion.onnx")
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (image,) = proto.graph.input
    assert image.name == INPUT_NAME and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [HEIGHT, WIDTH, 3]
    assert [o.name for o in proto.graph.output] == [OUTPUT_SCORES, OUTPUT_PROBABILITY]
    assert {n.op_type for n in proto.graph.node} >= {"Cast", "Mul", "Sigmoid"}  # the scaling is in the graph
    assert not {"Dropout", "RandomUniform"} & {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(str(out / "emotion.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        batch = np.zeros((n, HEIGHT, WIDTH, 3), np.uint8) + np.arange(n, dtype=np.uint8)[:, None, None, None] * 90
        scores, probability = session.run([OUTPUT_SCORES, OUTPUT_PROBABILITY], {INPUT_NAME: batch})
        assert scores.shape == (n, 2) and probability.shape == (n, 1)
        np.testing.assert_allclose(scores[:, 1:], probability, atol=1e-7)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)


def test_ir_contract_uint8_nhwc_named_outputs(exported):
    import openvino as ov

    _, out = exported
    core = ov.Core()
    for precision in ("fp32", "fp16", "int8"):
        model = core.read_model(_ir(out, precision))
        (image,) = model.inputs
        assert image.get_any_name() == INPUT_NAME and image.get_element_type() == ov.Type.u8
        assert image.get_partial_shape()[0].is_dynamic and list(image.get_partial_shape())[1:] == [HEIGHT, WIDTH, 3]
        assert str(ov.layout_helpers.get_layout(image)) == "[N,H,W,C]"
        assert [o.get_any_name() for o in model.outputs] == [OUTPUT_SCORES, OUTPUT_PROBABILITY]
    compiled = core.compile_model(core.read_model(_ir(out, "fp32")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(np.full((2, HEIGHT, WIDTH, 3), 128, np.uint8))
    assert result[OUTPUT_SCORES].shape == (2, 2) and result[OUTPUT_PROBABILITY].shape == (2, 1)


# -- OpenVINO Model API on raw photos -----------------------------------------------------------------------------


def _photos(folder: Path) -> list[Path]:
    """JPEG and PNG photos of sizes other than the model's, and one of exactly its size."""
    rng = np.random.default_rng(11)
    paths = []
    for i, (height, width) in enumerate([(612, 612), (480, 640), (1203, 97), (HEIGHT, WIDTH), (333, 500)] * 2):
        ys, xs = np.linspace(0, 1, height)[:, None, None], np.linspace(0, 1, width)[None, :, None]
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = top * (1 - ys) + bottom * ys * (0.5 + xs / 2) + rng.normal(0, 6, (height, width, 3))
        path = folder / f"photo{i}.{'png' if i % 3 == 0 else 'jpg'}"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_model_api_classifies_raw_photos_of_any_size_out_of_the_box(exported, tmp_path):
    """The one call a user makes: create_model(xml), then model(cv2.imread(photo)). Model API resizes with OpenCV,
    not Pillow's antialiased filter, so its P(Positive) is close to ours, not equal; fed our own preprocessed array
    (as BGR), its embedded steps must give our input exactly. Its label is argmax(scores), a 0.5 threshold."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("model_api")
    import openvino as ov
    from model_api.adapters import OpenvinoAdapter
    from model_api.models import Model

    from emotion.runtime import EmotionClassifier

    _, out = exported
    xml = str(_ir(out, "fp32"))
    plain = Model.create_model(xml)
    adapter = OpenvinoAdapter(ov.Core(), xml, device="CPU", plugin_config={"INFERENCE_PRECISION_HINT": "f32"})
    exact = Model.create_model(adapter, preload=True)
    assert type(plain).__name__ == "ClassificationModel" and plain.params.labels == ["Negative", "Positive"]
    with EmotionClassifier.load(xml, cache_dir=None) as ours:
        for path in _photos(tmp_path):
            bgr = cv2.imread(str(path))
            mine = ours.predict(path).probability
            result = plain(bgr)
            assert result.top_labels[0].name in ("Negative", "Positive")
            # raw_scores is a view of the request's output tensor, overwritten by the next call: read it now
            assert abs(float(result.raw_scores[1]) - mine) < 0.05, path.name
            same_input = exact(np.ascontiguousarray(ours.preprocess(path)[..., ::-1]))
            assert float(same_input.raw_scores[1]) == pytest.approx(mine, abs=1e-5)
            assert same_input.top_labels[0].id == int(mine >= 0.5)


# -- other models and modes ---------------------------------------------------------------------------------------


def _batchnorm_model(tmp: Path, data_root: Path) -> Path:
    """A BatchNorm + global-average-pool model (like the coming 'edge' architecture), as a bare .keras file."""
    import keras
    from keras import layers

    from emotion.train import data
    from emotion.train.model_io import save_model

    inputs = keras.Input((HEIGHT, WIDTH, 3), name="image")
    x = layers.Conv2D(8, 3, strides=2)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs, name="bn")
    info = ModelInfo(input_height=HEIGHT, input_width=WIDTH, architecture="bn-test")
    samples = data.load_dataset(data_root).samples
    x_, y_, _ = data.load_images(samples, info.preprocess_spec)
    _train(model, x_, y_, epochs=2)
    return save_model(model, tmp / "bn.keras", info)


def test_batchnorm_model_bare_file_with_and_without_data(tiny_run, tmp_path):
    """Inference graph only: BatchNorm on its moving statistics (training=True would break parity)."""
    from emotion.export import export_model

    data_root = Path(json.loads((tiny_run / "run.json").read_text())["data_root"])
    source = _batchnorm_model(tmp_path, data_root)
    with_data = export_model(source, tmp_path / "a", ["fp32"], data=data_root, progress=False)
    assert with_data.ok and with_data.run_dir is None
    assert "--data" in with_data.verification.data["source"] and with_data.verification.check("onnxruntime").parity.roc_auc
    synthetic = export_model(source, tmp_path / "b", ["fp32", "fp16"], progress=False)
    assert synthetic.ok and "synthetic" in synthetic.verification.data["source"]
    assert synthetic.verification.check("openvino-fp32").parity.roc_auc is None
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["emotion", "emotion-fp16", "emotion.onnx",
                                                                 "export_report.json"]


def test_a_refit_run_says_its_validation_figures_are_in_sample(tiny_run, tmp_path):
    """A run whose model also trained on its validation split (``emotion-train --refit``): the export says that
    AUC on those images is in-sample; verified on --data images instead, it does not."""
    from emotion.export import export_model

    run = shutil.copytree(tiny_run, tmp_path / "run")
    config = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**config, "refit": True}), encoding="utf-8")
    on_split = export_model(run, tmp_path / "a", ["fp32"], progress=False)
    assert on_split.ok and any("refit on its validation images" in note for note in on_split.notes)
    assert "validation-split" in on_split.verification.data["source"]
    on_data = export_model(run, tmp_path / "b", ["fp32"], data=config["data_root"], progress=False)
    assert on_data.ok and not any("refit" in note for note in on_data.notes)
    plain = export_model(tiny_run, tmp_path / "c", ["fp32"], progress=False)
    assert not any("refit" in note for note in plain.notes)


def test_int8_only_with_accuracy_control(tiny_run, tmp_path):
    from emotion.export import export_model

    report = export_model(tiny_run, tmp_path / "q", ["int8"], max_auc_drop=0.05, name="mood", version=3,
                          progress=False)
    assert report.quantization["method"] == "nncf.quantize_with_accuracy_control"
    assert report.quantization["max_auc_drop"] == 0.05
    assert report.ok and report.verification.check("openvino-fp32").verdict.value == "pass"  # FP32 built and checked
    assert sorted(p.relative_to(tmp_path / "q").as_posix() for p in (tmp_path / "q").rglob("*.xml")) == [
        "mood-int8/3/model.xml"]
    assert (tmp_path / "q" / "mood.onnx").is_file()


def test_bare_model_without_calibration_cannot_make_int8(tiny_run, tmp_path):
    from emotion.export import ExportError, export_model

    bare = tmp_path / "alone.keras"
    shutil.copy(tiny_run / "model.keras", bare)
    with pytest.raises(ExportError, match="--calibration"):
        export_model(bare, tmp_path / "out", ["int8"], progress=False)
    assert not (tmp_path / "out").exists()


# -- command line ------------------------------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*EXPORT_CMD, *args], capture_output=True, text=True, timeout=timeout)


def _assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("emotion-export")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_inputs_fail_fast_with_one_line(tiny_run, tmp_path):
    not_model = tmp_path / "model.keras"
    not_model.write_text("not a model")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images here")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    out = str(tmp_path / "out")
    _assert_one_line_error(_cli(str(tmp_path / "missing"), "--out", out), "does not exist")
    _assert_one_line_error(_cli(str(not_model), "--out", out), "is not a Keras model")
    _assert_one_line_error(_cli(str(tiny_run), "--out", out, "--calibration", str(empty)), "holds no images")
    _assert_one_line_error(_cli(str(tiny_run), "--out", str(existing)), "already exists")
    _assert_one_line_error(_cli(str(tiny_run), "--out", out, "--opset", "13"), "opset")
    _assert_one_line_error(_cli(str(tiny_run), "--out", str(tiny_run.parent), "--force"), "contains")
    assert (existing / "keep.txt").read_text() == "mine"
    assert not Path(out).exists()


def test_cli_refuses_non_sigmoid_and_broken_models(tmp_path, capsys):
    import keras

    from emotion.export.cli import main
    from emotion.train.model_io import save_model

    softmax = keras.Sequential([keras.Input((HEIGHT, WIDTH, 3)), keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(2, activation="softmax")])
    linear = keras.Sequential([keras.Input((HEIGHT, WIDTH, 3)), keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(1)])
    info = ModelInfo(input_height=HEIGHT, input_width=WIDTH)
    save_model(softmax, tmp_path / "softmax.keras", info)
    save_model(linear, tmp_path / "linear.keras", info)
    broken = tmp_path / "broken.keras"
    with __import__("zipfile").ZipFile(broken, "w") as archive:
        archive.writestr("hello.txt", "a zip, not a Keras model")
    for path, fragment in ((tmp_path / "softmax.keras", "one sigmoid unit"),
                           (tmp_path / "linear.keras", "'linear'"),
                           (broken, "could not be loaded")):
        assert main([str(path), "--out", str(tmp_path / "out"), "--precision", "fp32", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()


def test_cli_force_json_replaces_existing(tiny_run, tmp_path, capsys):
    from emotion.export.cli import main

    out = tmp_path / "models"
    out.mkdir()
    (out / "old.txt").write_text("old export")
    argv = [str(tiny_run), "--out", str(out), "--precision", "int8", "fp16", "--force", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is the report alone: progress (NNCF's bars too) is on stderr
    assert report["ok"] and report["precisions"] == ["fp16", "int8"]
    assert "[1/" in captured.err
    assert not (out / "old.txt").exists() and (out / "emotion-fp16" / "1" / "model.xml").is_file()
    assert not (out / "emotion").exists()


def test_cli_interrupt_leaves_nothing(tiny_run, tmp_path):
    out = tmp_path / "models"
    process = subprocess.Popen([*EXPORT_CMD, str(tiny_run), "--out", str(out)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "[3/" in line:  # TensorFlow loaded, images read, conversion starting
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".models")]


def test_verify_directory_rechecks_an_existing_export(exported, tiny_run):
    from emotion.export.verify import verify_directory

    _, out = exported
    again = verify_directory(out, tiny_run)
    assert again.parity_ok and {c.format for c in again.checks} >= {"onnxruntime", "openvino-fp32", "openvino-fp16",
                                                                    "openvino-int8"}


def test_cli_parity_failure_exits_1_after_writing_the_report(tiny_run, tmp_path, capsys, monkeypatch):
    from emotion.export import parity
    from emotion.export.cli import main

    # nothing can pass: simulate a broken conversion
    monkeypatch.setattr(parity, "EXPORT_LIMITS", {"fp32": parity.Limits(max_abs_dp=-1.0)})
    out = tmp_path / "models"
    assert main([str(tiny_run), "--out", str(out), "--precision", "fp32", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "FP32 parity failed" in err and "Traceback" not in err
    report = json.loads((out / "export_report.json").read_text())
    assert report["ok"] is False and report["verification"]["problems"]
    assert (out / "emotion" / "1" / "model.xml").is_file()


def test_edge_int8_keeps_its_statistics_and_head_in_float(synth_data, tmp_path):
    """edge's INT8: NNCF's fake-quantize nodes stay out of the colour statistics and everything after them (the
    per-tensor 8-bit scale cannot hold the heavy-tailed statistics); the rest is quantized and stays close to FP32."""
    import openvino as ov

    from emotion.export import export_model
    from emotion.export.quantize import FLOAT_LAYER
    from emotion.train.trainer import TrainConfig, train

    run = tmp_path / "edge-run"
    train(TrainConfig(data=synth_data, out=run, arch="edge", epochs=3, verbose=0), log=lambda msg: None)
    report = export_model(run, tmp_path / "out", progress=False)
    model = ov.Core().read_model(_ir(tmp_path / "out", "int8"))
    fake_quantize = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert fake_quantize  # the image input is still quantized
    after_statistics = False
    for op in model.get_ordered_ops():  # topological order: nothing after the statistics may be quantized
        after_statistics = after_statistics or FLOAT_LAYER in op.get_friendly_name()
        assert not (after_statistics and op.get_type_name() == "FakeQuantize"), op.get_friendly_name()
    assert report.verification.parity_ok and report.verification.check("openvino-int8").parity.max_abs_dp < 0.05
