"""The seed recipe: architecture, augmentation, a real (short) training run and its artefacts, evaluation,
and the command lines' errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from emotion.train import models


def test_seed_architecture_is_exact():
    model = models.build("seed")
    assert model.count_params() == 1_539_393
    assert model.input_shape == (None, 400, 500, 3)
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [64, 64, 128, 128]
    assert all(c.strides == (2, 2) and c.kernel_size == (3, 3) and c.activation.__name__ == "linear" for c in convs)
    dense = [l for l in model.layers if l.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [256, 512, 1]
    assert dense[-1].activation.__name__ == "sigmoid"
    assert [l.rate for l in model.layers if l.__class__.__name__ == "Dropout"] == [0.5, 0.5]


def test_unknown_architecture_lists_known():
    with pytest.raises(ValueError, match="known: seed"):
        models.get("resnet9000")


def test_augmentation_matches_keras_reference_transform():
    """Our batched warp equals Keras' ImageDataGenerator transform (scipy) to float precision.

    Keras 3's ``apply_affine_transform`` builds its matrix in (column, row) order where the seed-era
    ImageDataGenerator used (row, column); the two agree once angle and axes are mirrored, which is what this
    checks, on a square image so that the centre is the same in both conventions."""
    from keras.src.legacy.preprocessing.image import apply_affine_transform
    from scipy.ndimage import gaussian_filter

    from emotion.train.augment import apply_affine

    image = gaussian_filter(np.random.default_rng(0).random((48, 48, 3)).astype(np.float32), (3, 3, 0))
    for theta, tx, ty, zx, zy in [(30, 5, -7, 0.9, 1.1), (-40, -8, 10, 1.2, 0.8)]:
        reference = apply_affine_transform(image, theta=theta, tx=tx, ty=ty, zx=zx, zy=zy, row_axis=0,
                                           col_axis=1, channel_axis=2, fill_mode="nearest")
        ours = apply_affine(image[None], [-theta], [ty], [tx], [0.0], [zy], [zx], [False]).numpy()[0]
        np.testing.assert_allclose(ours, reference, atol=1e-5)
    flipped = apply_affine(image[None], [0.0], [0.0], [0.0], [0.0], [1.0], [1.0], [True]).numpy()[0]
    np.testing.assert_allclose(flipped, image[:, ::-1], atol=1e-6)


def test_random_augmentation_changes_images_but_not_their_range():
    import tensorflow as tf

    from emotion.train.augment import random_affine

    batch = tf.random.uniform((4, 32, 40, 3), seed=1)
    out = random_affine(batch, seed=tf.constant([1, 2], tf.int64)).numpy()
    again = random_affine(batch, seed=tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(out, again)  # seeded: reproducible
    assert out.shape == (4, 32, 40, 3) and not np.allclose(out, batch.numpy())
    assert out.min() >= 0.0 and out.max() <= 1.0  # nearest fill, no black borders


def test_training_run_writes_every_artefact(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"model.keras", "split.csv", "run.json", "history.json", "metrics.json", "classification_report.txt",
            "plots"} <= names
    assert {p.name for p in (tiny_run / "plots").iterdir()} == {"training_curves.png", "roc_curve.png",
                                                                "confusion_matrix.png"}
    history = json.loads((tiny_run / "history.json").read_text())
    assert len(history["loss"]) == 2 and "val_auc" in history
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    v = metrics["validation"]
    assert v["n"] == 16 and 0.0 <= v["roc_auc"] <= 1.0
    assert np.array(v["confusion_matrix"]).sum() == 16
    assert metrics["dataset"]["majority_accuracy"] > 0.5
    assert len(metrics["timing"]["epoch_seconds"]) == 2
    with zipfile.ZipFile(tiny_run / "model.keras") as archive:
        assert "emotion_model_info.json" in archive.namelist()


def test_saved_model_reproduces_validation_metrics(tiny_run):
    """The model loaded from disk, fed by the shared preprocessing, gives the run's own validation AUC."""
    from emotion.train.data import load_images, read_manifest
    from emotion.train.metrics import roc_auc
    from emotion.train.model_io import load_model, predict_proba

    model, info = load_model(tiny_run)
    assert (info.input_height, info.input_width) == (128, 160) and info.architecture == "seed"
    assert info.labels == ("Negative", "Positive") and len(info.source_sha256) == 64
    split = read_manifest(tiny_run / "split.csv", json.loads((tiny_run / "run.json").read_text())["data_root"])
    images, y, rejected = load_images(split.validation, info.preprocess_spec)
    assert not rejected
    recorded = json.loads((tiny_run / "metrics.json").read_text())["validation"]["roc_auc"]
    assert roc_auc(y, predict_proba(model, images)) == pytest.approx(recorded, abs=1e-9)


def _cli(name: str, *args: str) -> subprocess.CompletedProcess:
    code = f"import sys; from emotion.train.{name} import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)


def test_evaluate_cli_on_run_and_on_folder(tiny_run, synth_data, tmp_path):
    result = _cli("evaluate_cli", str(tiny_run), str(tiny_run), "--json", "--quiet", "--out", str(tmp_path / "ev"))
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tiny_run / "metrics.json").read_text())["validation"]
    reported = json.loads(result.stdout)
    assert reported["roc_auc"] == pytest.approx(recorded["roc_auc"], abs=1e-9)
    assert (tmp_path / "ev" / "plots" / "roc_curve.png").is_file()
    result = _cli("evaluate_cli", str(tiny_run / "model.keras"), str(synth_data), "--quiet", "--out", str(tmp_path / "all"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["n"] == 80


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "--out", "{out}"], "does not exist"),
        (["{data}", "--out", "{out}", "--image-size", "400"], "HxW"),
        (["{data}", "--out", "{out}", "--arch", "nope"], "known: seed"),
        (["{data}", "--out", "{run}"], "already exists"),
        (["{data}", "--out", "{data_parent}", "--force"], "contains"),  # replacing it would delete the data
        (["{data}", "--out", "{out}", "--learning-rate", "-1"], "greater than 0"),
        (["{data}", "--out", "{out}", "--seed", "-1"], "--seed"),
        (["{data}", "--out", "{file}/out"], "is a file, not a folder"),  # any file-system error: one line
        (["{empty}", "--out", "{out}"], "no Negative/ or Positive/"),
    ],
)
def test_train_cli_bad_input(args, message, synth_data, tiny_run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("a file, not a folder")
    fill = {"missing": tmp_path / "nope", "out": tmp_path / "out", "data": synth_data, "run": tiny_run,
            "empty": tmp_path / "empty", "data_parent": synth_data.parent, "file": tmp_path / "file"}
    result = _cli("cli", *[a.format(**fill) for a in args])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and (synth_data / "Positive").is_dir()


def test_evaluate_cli_replaces_only_an_earlier_evaluation(tiny_run, synth_data, tmp_path):
    """--out is replaced, so it must never be a folder of the user's: not the data, not the run, not any other."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for out, message in [(synth_data, "contains"), (tiny_run, "contains"), (mine, "not an earlier evaluation")]:
        result = _cli("evaluate_cli", str(tiny_run), str(synth_data), "--quiet", "--out", str(out))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert (mine / "keep.txt").is_file() and (synth_data / "Positive").is_dir() and (tiny_run / "run.json").is_file()
    for _ in range(2):  # a new folder, then the evaluation it wrote, replaced
        result = _cli("evaluate_cli", str(tiny_run), str(tiny_run), "--quiet", "--out", str(tmp_path / "ev"))
        assert result.returncode == 0, result.stderr


def test_train_cli_json_prints_the_metrics_alone_on_stdout(synth_data, tmp_path):
    """Through the entry point, as a pipeline runs it: Keras' progress and the log go to stderr."""
    out = tmp_path / "run"
    result = _cli("cli", str(synth_data), "--out", str(out), "--arch", "edge", "--epochs", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((out / "metrics.json").read_text())
    assert "validation: " in result.stderr and "Epoch 1/2" in result.stderr


def test_resolve_returns_a_new_config_and_leaves_the_original_as_given():
    from pathlib import Path

    from emotion.train.trainer import TrainConfig

    given = TrainConfig(data=Path("data"), out=Path("run"), arch="edge")
    resolved = given.resolve()
    assert given.epochs is None and given.image_size is None and given.learning_rate is None
    assert resolved.epochs >= 1 and resolved.image_size == models.get("edge").default_input_size
    assert resolved.resolve() == resolved
    with pytest.raises(ValueError, match="--epochs"):
        TrainConfig(data=Path("data"), out=Path("run"), epochs=0).resolve()


def test_run_folder_names_its_files_and_says_why_a_split_is_unusable(tiny_run, tmp_path):
    import shutil

    from emotion.train.data import DataError
    from emotion.train.run_folder import RunFolder, locate

    model_path, run = locate(tiny_run / "model.keras")
    assert run == RunFolder(tiny_run) and locate(tiny_run) == (model_path, run)
    assert len(run.split().validation) > 0 and run.metrics()["summary"]["roc_auc"] >= 0
    moved = tmp_path / "run"
    shutil.copytree(tiny_run, moved)
    config = json.loads((moved / "run.json").read_text())
    (moved / "run.json").write_text(json.dumps({**config, "data_root": str(tmp_path / "gone")}))
    with pytest.raises(DataError, match="missing; pass the data folder itself"):
        RunFolder(moved).split()
    bare = tmp_path / "bare.keras"
    shutil.copy(tiny_run / "model.keras", bare)
    assert locate(bare) == (bare, None)
