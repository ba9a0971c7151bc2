"""The ``edge`` architecture: small, CPU-friendly, standard layers only, trains and round-trips through a file."""

from __future__ import annotations

import numpy as np
import pytest

from emotion.train import models


@pytest.fixture(scope="module")
def edge_model():
    return models.build("edge")


def test_edge_is_registered_with_its_recipe():
    arch = models.get("edge")
    assert arch.default_input_size == (64, 80)
    r = arch.recipe
    assert (r.class_weight, r.threshold, r.lr_schedule) == ("balanced", "balanced", "cosine")
    assert r.early_stopping > 0 and r.epochs >= 20 and 0 < r.early_stopping_start < r.epochs


def test_edge_is_small_and_cheap(edge_model):
    seed = models.build("seed")
    assert edge_model.input_shape == (None, 64, 80, 3) and edge_model.output_shape == (None, 1)
    assert edge_model.count_params() < 1_000
    assert models.count_flops(seed) == pytest.approx(1.23e9, rel=0.01)
    assert models.count_flops(edge_model) * 100 < models.count_flops(seed)
    with_texture = models.build_edge((128, 160), texture=True)
    assert with_texture.count_params() < 50_000 and models.count_flops(with_texture) * 50 < models.count_flops(seed)


ALLOWED = {"InputLayer", "Rescaling", "AveragePooling2D", "Conv2D", "DepthwiseConv2D", "BatchNormalization",
           "ReLU", "GlobalAveragePooling2D", "Concatenate", "Dropout", "Dense", "ColourStatistics", "Cropping2D"}


@pytest.mark.parametrize("options", [{}, {"texture": True}, {"texture": True, "texture_input": "luma", "colour": "both"}])
def test_edge_uses_only_export_friendly_layers(options):
    """Standard layers that tf2onnx and OpenVINO convert plus the weight-free statistics layer, BatchNorm that
    folds, ReLU, no Flatten, no Lambda, one sigmoid unit."""
    model = models.build_edge(**options)
    kinds = {layer.__class__.__name__ for layer in model.layers}
    assert kinds <= ALLOWED, kinds - ALLOWED
    for layer in model.layers:
        if layer.__class__.__name__ in ("Conv2D", "DepthwiseConv2D"):
            assert not layer.use_bias  # followed by BatchNorm (or the fixed luma weights)
    last = model.layers[-1]
    assert last.name == "probability" and last.activation.__name__ == "sigmoid" and last.units == 1


def test_colour_statistics_match_the_baseline_features():
    """The in-graph statistics equal the numpy ones they mirror (channel means, value and saturation means)."""
    from emotion.runtime.preprocess import scale
    from emotion.train.features import colour_features

    rng = np.random.default_rng(3)
    images = (rng.random((3, 24, 30, 3)) * 255).astype(np.uint8)
    layer_cls = models.colour_statistics_layer()
    layer = layer_cls(hue_bins=6, tone_bins=5)
    out = np.asarray(layer(scale(images)))
    assert out.shape == (3, 12 + 6 + 2 * 5)
    for image, stats in zip(images, out):
        reference = colour_features(image)
        np.testing.assert_allclose(stats[[0, 1, 2, 3]], reference[[0, 5, 10, 20]], atol=1e-5)  # R, G, B, value
        np.testing.assert_allclose(stats[4], reference[15], atol=5e-3)  # saturation (eps in the divide)
        np.testing.assert_allclose(stats[6:9], image.reshape(-1, 3).std(0) / 255.0, atol=1e-4)
    hue = out[:, 12:18]
    assert np.all(hue >= 0) and np.all(out[:, 18:] >= 0)
    np.testing.assert_allclose(out[:, 18:23].sum(1), 1.0, atol=1e-5)  # triangular bins partition [0, 1]
    again = layer_cls.from_config(layer.get_config())
    assert (again.hue_bins, again.tone_bins) == (6, 5)
    grey = np.full((1, 8, 8, 3), 128, np.uint8)
    np.testing.assert_allclose(np.asarray(layer(scale(grey)))[0, 12:18], 0.0, atol=1e-6)  # grey has no hue


def test_edge_describes_the_whole_picture_and_its_centre(edge_model):
    """Two statistics layers: one on the whole pooled image, one on its centre half (a quarter of the area), so a
    picture whose subject differs from its surroundings gets two different descriptions."""
    import keras

    from emotion.runtime.preprocess import scale

    stats = [layer for layer in edge_model.layers if layer.__class__.__name__ == "ColourStatistics"]
    assert [layer.name for layer in stats] == [models.COLOUR_STATISTICS_NAME, f"centre_{models.COLOUR_STATISTICS_NAME}"]
    assert stats[1].input.shape[1:3] == (16, 20) and stats[0].input.shape[1:3] == (32, 40)
    image = np.zeros((1, 64, 80, 3), np.uint8)
    image[:, 16:48, 20:60] = (200, 40, 40)  # a red centre on black: the centre's mean red is 200/255, the whole's 50
    probe = keras.Model(edge_model.input, [layer.output for layer in stats])
    whole, centre = (np.asarray(out)[0] for out in probe(scale(image)))
    assert centre[0] == pytest.approx(200 / 255, abs=1e-5) and whole[0] == pytest.approx(50 / 255, abs=1e-5)
    assert edge_model.count_params() == 401
    whole = models.build("edge-whole")
    assert whole.count_params() == 201 and whole.input_shape == edge_model.input_shape
    assert [layer.name for layer in whole.layers if layer.__class__.__name__ == "ColourStatistics"] == [
        models.COLOUR_STATISTICS_NAME]
    assert models.get("edge-whole").recipe == models.get("edge").recipe


def test_edge_trains_and_reloads_with_the_same_predictions(synth_data, tmp_path):
    """Two epochs on the synthetic fixture; the saved file predicts exactly what the trained model did."""
    from emotion.runtime.metadata import ModelInfo
    from emotion.runtime.preprocess import PreprocessSpec
    from emotion.train.data import load_dataset, load_images
    from emotion.train.model_io import load_model, predict_proba, save_model
    from emotion.train.trainer import TrainConfig, fit

    dataset = load_dataset(synth_data)
    images, y, _ = load_images(dataset.samples, PreprocessSpec(64, 80))
    order = np.random.default_rng(0).permutation(len(y))
    tr, val = order[:60], order[60:]
    cfg = TrainConfig(data=synth_data, out=tmp_path / "unused", arch="edge", epochs=2, verbose=0)
    fitted = fit(cfg, images[tr], y[tr], images[val], y[val])
    assert len(fitted.history["loss"]) <= 2 and "val_auc" in fitted.history
    assert 0.0 < fitted.threshold < 1.0
    probability = predict_proba(fitted.model, images[val])
    assert probability.shape == (len(val),) and np.all((probability >= 0) & (probability <= 1))
    path = save_model(fitted.model, tmp_path / "edge.keras",
                      ModelInfo(threshold=fitted.threshold, input_height=64, input_width=80, architecture="edge"))
    loaded, info = load_model(path)
    assert info.architecture == "edge" and (info.input_height, info.input_width) == (64, 80)
    np.testing.assert_allclose(predict_proba(loaded, images[val]), probability, rtol=1e-5, atol=1e-6)
