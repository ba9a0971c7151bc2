"""``emotion-bench train-input DATA``: our training input pipeline against a naive per-image loop like the seed's.

Both make augmented float batches of the seed's 400x500 input from image files: **naive**, every epoch and
image, Keras ``load_img``, ``img_to_array``, ``ImageDataGenerator.random_transform`` and ``/ 255`` in Python;
**pipeline** (``emotion.train.trainer``), decode once with the shared preprocessing, then ``tf.data`` shuffles
and warps whole batches in parallel. Measured interleaved and repeated in one process: input-only images/s and
one training epoch of the seed model fed by each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from emotion.runtime.console import positive_int
from emotion.runtime.preprocess import PreprocessSpec

from .report import num, page, row_table
from .timing import interleave


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="labelled image folder (DATA/Negative, DATA/Positive)")
    parser.add_argument("--repeats", type=positive_int, default=2, help="interleaved input-only epochs of each "
                        "(default 2); the training epochs run one fewer, at least one")
    parser.add_argument("--no-train", action="store_true", help="input pipeline only, no training epochs")
    parser.add_argument("--limit", type=positive_int, help="use only the first N training images")


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
            x = keras.utils.img_to_array(keras.utils.load_img(samples[i].path, target_size=size))
            xs.append(gen.random_transform(x) / 255.0)
            ys.append(samples[i].label)
        yield np.stack(xs).astype(np.float32), np.array(ys, np.float32)


def _seconds(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _drain(batches: Iterable) -> None:
    deque(batches, maxlen=0)


def _side_by_side(ways: dict[str, Callable[[], float]], rounds: int, images: int) -> dict[str, Any]:
    """Seconds of the naive way and the pipeline in each interleaved round; images/s of their medians."""
    done = interleave(ways, rounds)
    seconds = {name: [r[name] for r in done] for name in ways}
    rate = {name: images / statistics.median(values) for name, values in seconds.items()}
    return {"naive_seconds": seconds["naive"], "pipeline_seconds": seconds["pipeline"],
            "naive_images_per_second": rate["naive"], "pipeline_images_per_second": rate["pipeline"],
            "speedup": rate["pipeline"] / rate["naive"]}


def run(args: argparse.Namespace, progress: Callable[[str], None], batch_size: int = 32) -> dict[str, Any]:
    """Measure both input paths on DATA's training split; the document."""
    import keras

    from emotion.train import models
    from emotion.train.data import load_dataset, load_images, stratified_split
    from emotion.train.trainer import TrainConfig, _datasets

    progress(f"naive loop against the pipeline on {args.data}")
    data, spec, rng = Path(args.data), PreprocessSpec(), np.random.default_rng(0)
    samples = stratified_split(load_dataset(data)).train[: args.limit]
    started = time.perf_counter()
    x, y, _ = load_images(samples, spec)
    decode_s = time.perf_counter() - started
    train_ds, _ = _datasets(x, y, x[:1], y[:1], TrainConfig(data=data, out=Path("unused"),
                                                            batch_size=batch_size).resolve())
    _drain(train_ds)  # warm-up: tf.data graph tracing
    result = {"data": str(data), "images_per_epoch": len(samples), "input_size": list(spec.size),
              "batch_size": batch_size, "decode_once_seconds": decode_s,
              "decode_once_images_per_second": len(samples) / decode_s, "input_only": _side_by_side(
                  {"naive": lambda: _seconds(lambda: _drain(_naive_batches(samples, spec.size, batch_size, rng))),
                   "pipeline": lambda: _seconds(lambda: _drain(train_ds))}, args.repeats, len(samples))}

    def fit_epoch(source: Iterable) -> float:
        keras.utils.set_random_seed(0)
        model = models.build("seed")
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(x[:batch_size], y[:batch_size].astype(np.float32), epochs=1, verbose=0)  # build + trace
        return _seconds(lambda: model.fit(source, epochs=1, verbose=0,
                                          steps_per_epoch=int(np.ceil(len(samples) / batch_size))))

    if not args.no_train:
        result["training_epoch"] = _side_by_side(
            {"naive": lambda: fit_epoch(_naive_batches(samples, spec.size, batch_size, rng)),
             "pipeline": lambda: fit_epoch(train_ds)}, max(1, args.repeats - 1), len(samples))
    return result


def _row(name: str, figures: dict[str, Any]) -> list[str]:
    return [name, num(figures["naive_images_per_second"]), num(figures["pipeline_images_per_second"]),
            f"{num(figures['speedup'], 2)}x"]


def markdown(r: dict[str, Any]) -> str:
    versions, each = r["hardware"]["versions"], lambda values: ", ".join(num(v, 2) for v in values)
    rows = [_row("augmented input only, images/s", r["input_only"])]
    if "training_epoch" in r:
        t = r["training_epoch"]
        rows += [_row("seed-model training epoch, images/s", t),
                 ["seed-model training epoch, seconds (each run)", each(t["naive_seconds"]),
                  each(t["pipeline_seconds"]), ""]]
    return page("Training-input benchmark", r, [
        f"Data: `{r['data']}`, {r['images_per_epoch']} training images per epoch, input "
        f"{r['input_size'][0]}x{r['input_size'][1]}, batch {r['batch_size']}, {r['hardware']['cores']} cores, "
        f"TensorFlow {versions.get('tensorflow')}, Keras {versions.get('keras')}.", "",
        row_table(["measure", "naive per-image loop (seed)", "emotion-edge pipeline", "speed-up"], rows), "",
        f"The pipeline's one-off decode of all images took {num(r['decode_once_seconds'], 2)} s "
        f"({num(r['decode_once_images_per_second'])} images/s); it is not repeated per epoch. Timings are medians "
        f"of interleaved repeats, input only (seconds): naive {each(r['input_only']['naive_seconds'])}; pipeline "
        f"{each(r['input_only']['pipeline_seconds'])}."])


def summary(result: dict[str, Any]) -> str:
    return markdown(result)
