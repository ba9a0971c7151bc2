"""The runtime on a corpus of awkward real files: every file classified or reported with its reason."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from _image_corpus import NON_UTF8_NAME, exif_rotated_jpeg, huge_png_header, make_corpus
from _tiny_models import reference_probability
from emotion.runtime.files import discover
from emotion.runtime.preprocess import ImageDecodeError, resize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "photos"
    files, skipped = make_corpus(folder)
    return folder, files, skipped


def test_every_file_is_classified_or_reported(tiny_classifier, corpus):
    folder, files, skipped = corpus
    results = list(tiny_classifier.predict_many(discover([folder])))
    by_path = {os.fsencode(p.path): p for p in results}
    assert len(by_path) == len(results)
    expected = {os.fsencode(f.path): f for f in files}
    assert set(by_path) == set(expected)  # notes.txt in a folder is skipped, not reported
    for key, item in expected.items():
        prediction = by_path[key]
        assert prediction.ok == item.ok, (item.note, prediction.error)
        if item.ok:
            assert prediction.label in tiny_classifier.info.labels and 0.0 <= prediction.probability <= 1.0
        else:
            assert prediction.error and "\n" not in prediction.error and prediction.label is None
    assert all(os.fsencode(s) not in by_path for s in skipped)
    reasons = {os.path.basename(k).decode("latin-1"): p.error for k, p in by_path.items() if not p.ok}
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["text.jpg"].startswith("not an image")
    assert reasons["truncated.jpg"].startswith("corrupt or truncated image")
    assert "refused before decoding" in reasons["huge.png"]
    assert "broken symbolic link" in reasons["broken_link.jpg"]
    assert "Too many levels of symbolic links" in reasons["loop_a.jpg"]
    if "unreadable.jpg" in reasons:
        assert reasons["unreadable.jpg"] == "permission denied"
    assert by_path[os.path.join(os.fsencode(folder), NON_UTF8_NAME)].ok


def test_exif_rotation_and_first_gif_frame_are_what_the_model_sees(tiny_classifier, corpus):
    folder = corpus[0]
    spec = tiny_classifier.spec
    _, displayed = exif_rotated_jpeg()
    expected = reference_probability(resize(displayed, spec)[None])[0]
    assert tiny_classifier.predict(folder / "rotated.jpg").probability == pytest.approx(expected, abs=1e-5)
    red = np.zeros((spec.height, spec.width, 3), np.uint8)
    red[..., 0] = 255
    assert tiny_classifier.predict(folder / "animated.gif").probability == pytest.approx(
        reference_probability(red[None])[0], abs=1e-5
    )


def test_transparency_is_white_and_16_bit_is_its_high_byte(tiny_classifier, tmp_path):
    spec = tiny_classifier.spec
    clear = Image.new("RGBA", (spec.width, spec.height), (0, 0, 255, 0))  # fully transparent blue
    white = np.full((spec.height, spec.width, 3), 255, np.uint8)
    assert tiny_classifier.predict(clear).probability == pytest.approx(reference_probability(white[None])[0], abs=1e-5)
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((spec.height, spec.width), 0x8000, np.uint16)).save(path)
    grey = np.full((spec.height, spec.width, 3), 0x80, np.uint8)
    assert tiny_classifier.predict(path).probability == pytest.approx(reference_probability(grey[None])[0], abs=1e-5)


def test_decompression_bomb_is_refused_from_its_header(tiny_classifier, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png_header(100_000, 100_000))
    assert path.stat().st_size < 200
    with pytest.raises(ImageDecodeError, match="refused before decoding"):
        tiny_classifier.predict(path)
    with pytest.raises(ImageDecodeError, match="refused before decoding"):
        tiny_classifier.predict(huge_png_header(9_000, 9_000))  # 81 Mpx: over our 64 Mpx limit


def test_fifos_in_a_folder_do_not_block_the_scan(tiny_classifier, tmp_path):
    import threading

    folder = tmp_path / "with-fifo"
    folder.mkdir()
    Image.new("RGB", (20, 20), (10, 200, 10)).save(folder / "ok.png")
    os.mkfifo(folder / "pipe.jpg")  # opening it for reading would wait for a writer forever
    os.mkfifo(folder / "pipe")
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(tiny_classifier.predict_many(discover([folder]))), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the scan blocked on a FIFO"
    assert [(os.path.basename(p.path), p.ok) for p in results] == [("ok.png", True), ("pipe.jpg", False)]
    assert results[1].error == "not a regular file (a FIFO, socket or device)"
