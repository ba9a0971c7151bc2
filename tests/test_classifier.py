"""EmotionClassifier on tiny real OpenVINO models: inputs, batches, streams, errors that reach their image."""

from __future__ import annotations

import asyncio
import re
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _tiny_models import HEIGHT, WIDTH, reference_probability, save_ir
from emotion.runtime import Candidate, EmotionClassifier, ImageDecodeError, Prediction, preprocess

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 256, (count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    # Spread the answers: give each image its own colour balance.
    batch[..., 0] = (batch[..., 0] * rng.uniform(0.2, 1.0, (count, 1, 1))).astype(np.uint8)
    return batch


def photo(path: Path, seed: int = 1, size=(120, 90)) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[: size[1] // 2, :, 2] = 30
    Image.fromarray(pixels, "RGB").save(path, quality=92)
    return path


# -- single images -------------------------------------------------------------------------------------------
def test_path_bytes_file_pil_and_array_agree(tiny_classifier, tmp_path):
    clf = tiny_classifier
    path = photo(tmp_path / "photo.jpg")
    data = path.read_bytes()
    array = preprocess(path, clf.spec)
    results = [clf.predict(path), clf.predict(str(path)), clf.predict(data), clf.predict(io.BytesIO(data)),
               clf.predict(Image.open(path)), clf.predict(array)]
    probabilities = {r.probability for r in results}
    assert len(probabilities) == 1  # identical, not merely close: one preprocessing, one model
    (probability,) = probabilities
    assert probability == pytest.approx(reference_probability(array[None])[0], abs=1e-5)
    assert all(r.label == clf.info.label_for(probability) and r.ok for r in results)
    assert results[0].path == path and results[1].path == str(path) and results[2].path is None
    assert results[0].to_dict() == {"path": str(path), "label": results[0].label,
                                    "probability": float(str(np.float32(probability))), "error": None}


def test_predict_batch_matches_the_reference_and_single_predictions(tiny_classifier):
    clf = tiny_classifier
    batch = images(9)
    probabilities = clf.predict_batch(batch)
    assert probabilities.shape == (9,) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, reference_probability(batch), atol=1e-5)
    np.testing.assert_allclose([clf.predict(image).probability for image in batch], probabilities, atol=1e-7)
    assert clf.predict_batch(np.zeros((0, HEIGHT, WIDTH, 3), np.uint8)).shape == (0,)
    np.testing.assert_allclose(clf.predict_batch(batch[::2]), probabilities[::2], atol=1e-7)  # strided
    for wrong in (batch.astype(np.float32), batch[:, :16]):
        with pytest.raises(ValueError, match="uint8 array of shape"):
            clf.predict_batch(wrong)


def test_read_only_odd_and_unusable_arrays(tiny_classifier):
    clf = tiny_classifier
    batch = images(6, seed=11)
    expected = reference_probability(batch)
    frozen = [np.frombuffer(image.tobytes(), np.uint8).reshape(image.shape) for image in batch]
    assert not frozen[0].flags.writeable
    np.testing.assert_allclose([clf.predict(f).probability for f in frozen], expected, atol=1e-5)
    np.testing.assert_allclose([p.probability for p in clf.predict_many(frozen)], expected, atol=1e-5)
    assert clf.predict(np.asfortranarray(batch[0])).probability == clf.predict(batch[0]).probability
    unusable = {
        "uint8": batch[0].astype(np.float32),
        "empty image (0x0)": np.zeros((0, 0, 3), np.uint8),
        "exceeds the limit": np.broadcast_to(np.uint8(0), (12_000, 12_000, 3)),  # 144 Mpx, no memory spent
        "HxWx3": np.zeros((4, 4, 5), np.uint8),
        "from NoneType": None,
        "from int": 7,
        "not an image Pillow can identify": b"this is not an image",
    }
    for reason, item in unusable.items():
        with pytest.raises(ImageDecodeError, match=re.escape(reason)):
            clf.predict(item)


def test_submit_is_thread_safe_and_asyncio_friendly(tiny_classifier, tmp_path):
    clf = tiny_classifier
    batch = images(64, seed=3)
    expected = reference_probability(batch)
    with ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(clf.submit, batch))
    np.testing.assert_allclose([f.result(timeout=10).probability for f in futures], expected, atol=1e-5)

    async def main():
        return await asyncio.gather(*(asyncio.wrap_future(clf.submit(image)) for image in batch[:8]))

    np.testing.assert_allclose([p.probability for p in asyncio.run(main())], expected[:8], atol=1e-5)
    path = photo(tmp_path / "p.jpg")
    assert clf.submit(path).result(timeout=10) == clf.predict(path)
    with pytest.raises(ImageDecodeError):  # the error reaches the caller of the image that caused it
        clf.submit(b"garbage").result(timeout=10)


# -- streams -------------------------------------------------------------------------------------------------
def test_predict_many_keeps_order_with_a_bounded_window(tiny_classifier):
    pool = images(50, seed=5)
    expected = reference_probability(pool)
    produced, window = 0, 12

    def items():
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield b"garbage" if i % 97 == 13 else pool[i % 50]

    seen = 0
    for i, prediction in enumerate(tiny_classifier.predict_many(items(), window=window)):
        assert produced - i <= window  # never more than `window` items read ahead of what was yielded
        if i % 97 == 13:
            assert prediction.error == "not an image Pillow can identify" and prediction.label is None
        else:
            assert prediction.probability == pytest.approx(expected[i % 50], abs=1e-5), i
        seen += 1
    assert seen == produced == 1000


def test_predict_many_mixed_sources_and_errors_keep_going(tiny_classifier, tmp_path):
    clf = tiny_classifier
    path = photo(tmp_path / "a.jpg")
    missing = tmp_path / "missing.jpg"
    items = [path, b"", path.read_bytes(), missing, Candidate(tmp_path / "x.jpg", "not an image (content is not a known "
             "image format)"), Image.open(path), np.zeros((5, 5), np.float64), Candidate(path), str(path), None]
    results = list(clf.predict_many(items))
    assert len(results) == len(items)
    reference = clf.predict(path).probability
    ok = [0, 2, 5, 7, 8]
    assert [i for i, r in enumerate(results) if r.ok] == ok
    assert all(results[i].probability == reference for i in ok)
    assert results[1].error == "empty data (0 bytes)"
    assert "not found" in results[3].error and results[3].path == missing
    assert results[4].error.startswith("not an image") and results[4].path == tmp_path / "x.jpg"
    assert "uint8" in results[6].error and "NoneType" in results[9].error
    assert results[7].path == path and results[8].path == str(path)


def test_failed_inference_reaches_its_image_and_the_stream_goes_on(tmp_path):
    """The fragile model fails at run time when pixel [0, 0, 0] is not 255 (OpenVINO's shape-inference cache may
    let such an image through): errors land on those images only, and every other image is answered."""
    with EmotionClassifier.load(save_ir(tmp_path / "fragile", fragile=True), cache_dir=None, mode="throughput") as clf:
        batch = images(40, seed=2)
        good = np.arange(40) % 3 != 0
        batch[good, 0, 0, 0] = 255
        batch[~good, 0, 0, 0] = 0
        results = list(clf.predict_many(batch))
        failed = [i for i, r in enumerate(results) if not r.ok]
        assert failed and not good[failed].any()
        assert all("inference failed" in results[i].error for i in failed)
        np.testing.assert_allclose([results[i].probability for i in np.flatnonzero(good)],
                                   reference_probability(batch[good]), atol=1e-5)
        assert clf.predict(batch[1]).ok  # the requests that failed did not poison the model


def test_an_iterable_that_raises_keeps_the_predictions_before_it(tiny_classifier):
    def items():
        yield from images(5)
        raise OSError("the source went away")

    stream = tiny_classifier.predict_many(items(), window=4)
    received = []
    with pytest.raises(OSError, match="went away"):
        for prediction in stream:
            received.append(prediction)
    assert len(received) == 5 and all(p.ok for p in received)


def test_abandoned_stream_stops_reading(tiny_classifier):
    produced = 0

    def endless():
        nonlocal produced
        image = images(1)[0]
        while True:
            produced += 1
            yield image

    stream = tiny_classifier.predict_many(endless(), window=8)
    first = [next(stream) for _ in range(5)]
    stream.close()
    assert all(p.ok for p in first) and produced <= 5 + 8
    assert tiny_classifier.predict(images(1)[0]).ok  # the classifier is still usable


def test_closed_classifier_refuses_work(tiny_ir):
    clf = EmotionClassifier.load(tiny_ir, cache_dir=None)
    image = images(1)[0]
    assert clf.submit(image).result(timeout=10).ok
    clf.close()
    clf.close()  # idempotent
    for call in (clf.predict, clf.submit, lambda x: list(clf.predict_many([x]))):
        with pytest.raises(RuntimeError, match="closed"):
            call(image)


def test_real_photos_stream_like_single_predictions(tiny_classifier):
    folders = [SHARED_DATA / "oasis-dev", SHARED_DATA / "twitter-sample"]
    files = [p for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*.jpg"))]
    if not files:
        pytest.skip(f"no real photos under {SHARED_DATA}")
    sample = files[::12][:48]
    streamed = list(tiny_classifier.predict_many(sample))
    assert [p.path for p in streamed] == sample and all(isinstance(p, Prediction) for p in streamed)
    assert all(p.ok for p in streamed), [p.error for p in streamed if not p.ok]
    assert [p.probability for p in streamed] == [tiny_classifier.predict(p).probability for p in sample]
