"""Shared pytest fixtures. Each part of the project keeps its fixtures in its own delimited section."""

from __future__ import annotations

import signal

import pytest

# A shell that starts the suite in the background (`.ci/run &`) makes it ignore SIGINT, and every command a test
# starts would inherit that; the tests that press Ctrl-C on a command need it delivered as a terminal would.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# ==== data / train fixtures ==== begin ====
# Small real data (synthetic JPEGs; real photos when ../shared is present) and a small, really trained run.
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOTION_SHARED", REPO.parent / "shared"))
OASIS = SHARED / "data" / "oasis-dev"
TWITTER = SHARED / "data" / "twitter-sample"
TINY_SIZE = (128, 160)  # (height, width): near the smallest the seed CNN accepts, same aspect as 400x500


@pytest.fixture(scope="session")
def oasis_dir() -> Path:
    if not (OASIS / "Positive").is_dir():
        pytest.skip(f"real photos not present at {OASIS}")
    return OASIS


@pytest.fixture(scope="session")
def twitter_dir() -> Path:
    if not (TWITTER / "Positive").is_dir():
        pytest.skip(f"real photos not present at {TWITTER}")
    return TWITTER


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """80 synthetic JPEGs at 120x150 in the seed's layout (resized to the model's size when read)."""
    from emotion.train.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, SynthConfig(n=80, seed=5, height=120, width=150))
    return out


@pytest.fixture(scope="session")
def tiny_run(synth_data, tmp_path_factory) -> Path:
    """A seed-architecture run really trained for 2 epochs at 128x160 on ``synth_data``."""
    from emotion.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(data=synth_data, out=out, epochs=2, batch_size=16, image_size=TINY_SIZE, verbose=0),
          log=lambda msg: None)
    return out


# ==== data / train fixtures ==== end ====


# ==== runtime: tiny exported models (see tests/_tiny_models.py) ==== begin ====
# Models shaped like emotion-export's output, built with OpenVINO's opsets and onnx.helper (no TensorFlow),
# once per test session.


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """An export folder: emotion/1, emotion-fp16/1, emotion-int8/1 (IR), emotion.onnx, export_report.json."""
    from _tiny_models import make_export

    return make_export(tmp_path_factory.mktemp("exports") / "tiny")


@pytest.fixture(scope="session")
def tiny_ir(tiny_export):
    """The export's fp32 OpenVINO IR (.xml)."""
    return tiny_export / "emotion" / "1" / "model.xml"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_export):
    """The export's ONNX model."""
    return tiny_export / "emotion.onnx"


@pytest.fixture(scope="session")
def tiny_classifier(tiny_ir):
    """A loaded EmotionClassifier on the tiny IR (latency mode, no compiled-model cache), shared."""
    from emotion.runtime.classifier import EmotionClassifier

    classifier = EmotionClassifier.load(tiny_ir, cache_dir=None)
    yield classifier
    classifier.close()


# ==== runtime: tiny exported models ==== end ====
