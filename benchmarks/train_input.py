"""Training-input benchmark: our pipeline against a naive per-image loop like the seed's generator.

Both produce the same thing, augmented float batches of the seed's 400x500 input from image files:

* **naive** (the seed's way): every epoch, for every image, Keras ``load_img(target_size=...)``,
  ``img_to_array``, ``ImageDataGenerator.random_transform`` and ``/ 255``, one image at a time in Python;
* **pipeline** (``emotion.train.trainer``): decode once with the shared preprocessing in a thread pool, then
  ``tf.data`` shuffles and warps whole batches in parallel.

Measured side by side in one process, interleaved and repeated (the machine is shared and noisy): input-only
images/s, and the time of one training epoch of the seed model fed by each. Run:

    emotion-bench train-input ../shared/data/oasis-dev --out benchmarks/results/train_input.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from emotion.runtime.console import positive_int
from emotion.runtime.preprocess import PreprocessSpec

from .hardware import hardware_report
from .timing import rotations


def _naive_batches(samples, size, batch_size, rng):
    """The seed's generator, reduced to its per-image work (load_img, random_transform, rescale)."""
    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
                             zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")
    order = rng.permutation(len(samples))
    for start in range(0, len(order), batch_size):
        xs, ys = [], []
        for i in order[start : start + batch_size]:
            img = keras.utils.load_img(samples[i].path, target_size=size)
            x = keras.utils.img_to_array(img)
            xs.append(gen.random_transform(x) / 255.0)
            ys.append(samples[i].label)
        yield np.stack(xs).astype(np.float32), np.array(ys, np.float32)


def measure(data: Path, epochs_repeat: int = 2, batch_size: int = 32, train_epochs: bool = True, limit: int | None = None) -> dict:
    import keras
    import tensorflow as tf

    from emotion.train import models
    from emotion.train.data import load_dataset, load_images, stratified_split
    from emotion.train.trainer import TrainConfig, _datasets

    spec = PreprocessSpec()
    split = stratified_split(load_dataset(data))
    samples = split.train[:limit] if limit else split.train
    n = len(samples)
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    x, y, _ = load_images(samples, spec)
    decode_s = time.perf_counter() - t0
    cfg = TrainConfig(data=data, out=Path("unused"), batch_size=batch_size).resolve()
    train_ds, _ = _datasets(x, y, x[:1], y[:1], cfg)

    def naive_epoch() -> float:
        t = time.perf_counter()
        for _ in _naive_batches(samples, spec.size, batch_size, rng):
            pass
        return time.perf_counter() - t

    def pipeline_epoch() -> float:
        t = time.perf_counter()
        for _ in train_ds:
            pass
        return time.perf_counter() - t

    pipeline_epoch()  # warm-up: tf.data graph tracing
    epochs: dict[str, list[float]] = {"naive": [], "pipeline": []}
    for _, order in rotations(list(epochs), epochs_repeat):
        for name in order:
            epochs[name].append(naive_epoch() if name == "naive" else pipeline_epoch())
    input_naive, input_pipe = epochs["naive"], epochs["pipeline"]

    result: dict = {
        "data": str(data), "images_per_epoch": n, "input_size": list(spec.size), "batch_size": batch_size,
        "decode_once_seconds": round(decode_s, 2), "decode_once_images_per_second": round(n / decode_s, 1),
        "input_only": {
            "naive_seconds": [round(s, 2) for s in input_naive],
            "pipeline_seconds": [round(s, 2) for s in input_pipe],
            "naive_images_per_second": round(n / statistics.median(input_naive), 1),
            "pipeline_images_per_second": round(n / statistics.median(input_pipe), 1),
        },
    }
    result["input_only"]["speedup"] = round(statistics.median(input_naive) / statistics.median(input_pipe), 2)

    if train_epochs:
        def fit_epoch(source) -> float:
            keras.utils.set_random_seed(0)
            model = models.build("seed")
            model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
            model.fit(x[:batch_size], y[:batch_size].astype(np.float32), epochs=1, verbose=0)  # build + trace
            t = time.perf_counter()
            model.fit(source() if callable(source) else source, epochs=1, verbose=0,
                      steps_per_epoch=int(np.ceil(n / batch_size)))
            return time.perf_counter() - t

        fits: dict[str, list[float]] = {"naive": [], "pipeline": []}
        for _, order in rotations(list(fits), max(1, epochs_repeat - 1)):
            for name in order:
                fits[name].append(fit_epoch(lambda: _naive_batches(samples, spec.size, batch_size, rng))
                                  if name == "naive" else fit_epoch(train_ds))
        naive_fit, pipe_fit = fits["naive"], fits["pipeline"]
        result["training_epoch"] = {
            "naive_seconds": [round(s, 2) for s in naive_fit],
            "pipeline_seconds": [round(s, 2) for s in pipe_fit],
            "naive_images_per_second": round(n / statistics.median(naive_fit), 1),
            "pipeline_images_per_second": round(n / statistics.median(pipe_fit), 1),
            "speedup": round(statistics.median(naive_fit) / statistics.median(pipe_fit), 2),
        }
    result["machine"] = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                         "tensorflow": tf.__version__, "keras": keras.__version__}
    result["hardware"] = hardware_report()
    return result


def markdown(r: dict) -> str:
    lines = [
        "# Training-input benchmark",
        "",
        f"Data: `{r['data']}`, {r['images_per_epoch']} training images per epoch, input "
        f"{r['input_size'][0]}x{r['input_size'][1]}, batch {r['batch_size']}, {r['machine']['cpu_count']} cores, "
        f"TensorFlow {r['machine']['tensorflow']}, Keras {r['machine']['keras']}.",
        "",
        "| measure | naive per-image loop (seed) | emotion-edge pipeline | speed-up |",
        "|---|---|---|---|",
        f"| augmented input only, images/s | {r['input_only']['naive_images_per_second']} | "
        f"{r['input_only']['pipeline_images_per_second']} | {r['input_only']['speedup']}x |",
    ]
    if "training_epoch" in r:
        t = r["training_epoch"]
        lines.append(f"| seed-model training epoch, images/s | {t['naive_images_per_second']} | "
                     f"{t['pipeline_images_per_second']} | {t['speedup']}x |")
        lines.append(f"| seed-model training epoch, seconds (each run) | {t['naive_seconds']} | {t['pipeline_seconds']} | |")
    lines += [
        "",
        f"The pipeline's one-off decode of all images took {r['decode_once_seconds']} s "
        f"({r['decode_once_images_per_second']} images/s); it is not repeated per epoch. Timings are medians of "
        "interleaved repeats: " + json.dumps({k: r['input_only'][k] for k in ('naive_seconds', 'pipeline_seconds')}),
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="labelled image folder (DATA/Negative, DATA/Positive)")
    parser.add_argument("--out", metavar="FILE.md", help="write the Markdown report there (and FILE.json beside it)")
    parser.add_argument("--repeats", type=positive_int, default=2, help="interleaved epochs of each (default 2)")
    parser.add_argument("--no-train", action="store_true", help="input pipeline only, no training epochs")
    parser.add_argument("--limit", type=positive_int, help="use only the first N training images")


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Measure both input paths on DATA's training split; the document."""
    progress(f"naive loop against the pipeline on {args.data}")
    return measure(Path(args.data), args.repeats, train_epochs=not args.no_train, limit=args.limit)


def summary(result: dict) -> str:
    return markdown(result)
