"""Transfer learning (``--arch lite0``): a head on frozen features, fine-tuning of the top blocks, one saved model.

Shrunk to run in seconds: 64x64 inputs, a few epochs, the synthetic images of ``synth_data``; the network, the
ImageNet weights and both training stages are the real ones.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emotion.train import efficientnet_lite
from emotion.train.metrics import roc_auc
from emotion.train.trainer import TrainConfig, fit, train

SIZE = (64, 64)


@pytest.fixture(scope="module")
def lite_run(synth_data, tmp_path_factory) -> Path:
    """lite0 trained by emotion-train's code path: head for 10 epochs, then the top 2 blocks for up to 3; no
    refit, so the saved model is the one validation measured."""
    out = tmp_path_factory.mktemp("runs") / "lite0"
    train(TrainConfig(data=synth_data, out=out, arch="lite0", image_size=SIZE, epochs=10, fine_tune=2,
                      fine_tune_epochs=3, early_stopping=2, refit=False, verbose=0), log=lambda msg: None)
    return out


@pytest.fixture(scope="module")
def imagenet_lite0():
    return efficientnet_lite.build_efficientnet_lite("lite0", SIZE)


def _weights(model, name):
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


def test_run_is_one_model_from_image_to_probability(lite_run, synth_data):
    """The saved model alone reproduces the run's validation metrics; its threshold is the one chosen on
    validation and travels in its metadata."""
    from emotion.runtime.preprocess import PreprocessSpec
    from emotion.train.data import MANIFEST_NAME, load_images, read_manifest
    from emotion.train.model_io import load_model, predict_proba

    model, info = load_model(lite_run)
    assert model.input_shape == (None, *SIZE, 3) and model.output_shape == (None, 1)
    assert info.architecture == "lite0" and (info.input_height, info.input_width) == SIZE
    saved = json.loads((lite_run / "metrics.json").read_text())
    assert info.threshold == pytest.approx(saved["summary"]["threshold"])
    split = read_manifest(lite_run / MANIFEST_NAME, synth_data)
    images, labels, _ = load_images(split.validation, PreprocessSpec(*SIZE))
    auc = roc_auc(labels, predict_proba(model, images))
    assert auc == pytest.approx(saved["validation"]["roc_auc"], abs=1e-6)
    run = json.loads((lite_run / "run.json").read_text())
    assert (run["fine_tune"], run["augment"], run["refit"]) == (2, "flip", False)


def test_fine_tuning_trains_the_top_blocks_only(lite_run, imagenet_lite0):
    """The last two blocks (Lite0's block6d and block7a) moved; everything below kept its ImageNet weights, and
    every batch norm kept its ImageNet statistics (frozen, inference mode)."""
    from emotion.train.model_io import load_model

    model, _ = load_model(lite_run)
    history = json.loads((lite_run / "history.json").read_text())
    assert history["stage"][:10] == ["head"] * 10 and set(history["stage"][10:]) == {"fine-tune"}
    for name in ("block7a_project_conv", "block6d_expand_conv", "top_conv"):
        assert not np.allclose(_weights(model, name)[0], _weights(imagenet_lite0, name)[0]), name
    for name in ("stem_conv", "block6c_project_conv", "block7a_project_bn", "top_bn", "block6d_bn"):
        for trained, original in zip(_weights(model, name), _weights(imagenet_lite0, name)):
            np.testing.assert_array_equal(trained, original, err_msg=name)


def _pictures() -> tuple[np.ndarray, np.ndarray]:
    """24 noise pictures; Positive ones have a dark left half, so a mirrored view differs."""
    rng = np.random.default_rng(0)
    images = (rng.random((24, *SIZE, 3)) * 255).astype(np.uint8)
    labels = np.array([0, 1] * 12)
    images[labels == 1, :, : SIZE[1] // 2] //= 4
    return images, labels


def _standardisation(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean the head's frozen batch norm should hold when trained on ``images`` and their mirrors, and the one
    it holds."""
    import keras

    from emotion.runtime.preprocess import scale

    features = keras.Model(model.input, model.get_layer(efficientnet_lite.FEATURES_LAYER).output)
    views = np.concatenate([images, images[:, :, ::-1]])
    return features.predict(scale(views), verbose=0).mean(axis=0), \
        model.get_layer(efficientnet_lite.NORMALIZATION_LAYER).get_weights()[0]


def test_frozen_backbone_is_untouched_and_flip_doubles_the_views(synth_data, imagenet_lite0):
    """Without fine-tuning only the head trains, and it learns: Positive pictures (dark left half) rank above
    Negative ones on held-out images. The head standardises by the features of the images and their mirrors."""
    images, labels = _pictures()
    cfg = TrainConfig(data=synth_data, out=Path("unused"), arch="lite0", image_size=SIZE, epochs=10, fine_tune=0,
                      refit=False, verbose=0)
    fitted = fit(cfg, images[:16], labels[:16], images[16:], labels[16:])
    assert roc_auc(labels[16:], fitted.probability) > 0.9
    backbone = [layer.name for layer in imagenet_lite0.layers if layer.weights and layer.name.split("_")[0]
                in ("stem", "top") or layer.name.startswith("block")]
    for name in backbone:
        for trained, original in zip(_weights(fitted.model, name), _weights(imagenet_lite0, name)):
            np.testing.assert_array_equal(trained, original, err_msg=name)
    import keras

    from emotion.runtime.preprocess import scale

    features = keras.Model(fitted.model.input, fitted.model.get_layer(efficientnet_lite.FEATURES_LAYER).output)
    views = np.concatenate([images[:16], images[:16, :, ::-1]])  # the training images and their mirror images
    mean, variance = fitted.model.get_layer(efficientnet_lite.NORMALIZATION_LAYER).get_weights()
    expected = features.predict(scale(views), verbose=0)
    np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(variance, expected.var(axis=0), rtol=1e-3, atol=1e-6)
    assert fitted.history["stage"] == ["head"] * 10 and fitted.best_epoch == 9


@pytest.mark.parametrize("args, message", [
    (["--arch", "lite0", "--image-size", "24x24"], "too small for lite0: at least 32x32"),
    (["--arch", "seed", "--fine-tune", "2"], "--fine-tune applies to architectures with a pretrained backbone"),
    (["--arch", "edge", "--augment", "flip"], "--augment applies to architectures with a pretrained backbone"),
    (["--arch", "lite0", "--fine-tune", "17", "--fine-tune-epochs", "2"], "--fine-tune must be 0 to 16"),
    (["--arch", "lite2", "--fine-tune", "3", "--fine-tune-epochs", "0"], "--fine-tune-epochs of at least 1"),
])
def test_train_cli_refuses_bad_transfer_options(args, message, synth_data, tmp_path, capsys):
    from emotion.train.cli import main

    out = tmp_path / "run"
    assert main([str(synth_data), "--out", str(out), *args]) == 2
    error = capsys.readouterr().err
    assert error.strip().count("\n") == 0 and message in error, error
    assert not out.exists()


def test_refit_trains_again_on_validation_images_and_reports_the_first_fit(synth_data, imagenet_lite0):
    """With refit, the returned figures (validation probabilities, threshold, history, kept epoch) are the held-out
    ones of the first fit, and the returned model was trained anew on the training and validation images."""
    from emotion.train.model_io import predict_proba

    images, labels = _pictures()
    cfg = TrainConfig(data=synth_data, out=Path("unused"), arch="lite0", image_size=SIZE, epochs=5, fine_tune=2,
                      fine_tune_epochs=3, early_stopping=2, verbose=0)
    first = fit(replace(cfg, refit=False), images[:16], labels[:16], images[16:], labels[16:])
    refit = fit(replace(cfg, refit=True), images[:16], labels[:16], images[16:], labels[16:])
    np.testing.assert_array_equal(refit.probability, first.probability)
    assert (refit.threshold, refit.history, refit.best_epoch) == (first.threshold, first.history, first.best_epoch)
    np.testing.assert_allclose(predict_proba(first.model, images[16:]), first.probability, atol=1e-5)
    expected, held = _standardisation(imagenet_lite0, images[:16])[0], _standardisation(first.model, images)[1]
    np.testing.assert_allclose(held, expected, rtol=1e-4, atol=1e-5)
    expected, held = _standardisation(imagenet_lite0, images)[0], _standardisation(refit.model, images)[1]
    np.testing.assert_allclose(held, expected, rtol=1e-4, atol=1e-5)
