"""Folder inference on a Ray cluster with Ray Data: ``emotion-infer PATH... --ray [ADDRESS]``.

The driver finds the files with :func:`~emotion.runtime.files.discover`, as local ``emotion-infer`` does, and keeps
them. Ray Data is given the paths of the images: tasks read and decode them with the shared preprocessing, a pool of
actors that each load the model once classifies the arrays, and the answers come back in input order. The driver
turns them into :class:`~emotion.runtime.classifier.Prediction` for the same report as local runs, so both write
the same files, with the same reason for each file that failed.

The decode tasks read the files themselves rather than through ``ray.data.read_binary_files``: that reader drops
the bytes of a file name that are not UTF-8 (the file is then "not found"), and one file that vanished or cannot
be read fails the whole job, where a row with the reason is wanted.

Ray is imported here only, when a run asks for it (``pip install 'emotion-edge[ray]'``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
from typing import Any, Iterable, Iterator

import numpy as np

from .classifier import EmotionClassifier, Prediction
from .console import UsageError, attempt, one_line
from .files import Candidate
from .preprocess import PreprocessSpec, preprocess

INSTALL = "pip install 'emotion-edge[ray]'"
# Images per Ray Data block, the unit of one decode task and one actor call: enough to amortise Ray's cost per task
# and per object, few enough that the blocks of a folder keep every actor busy.
BLOCK = 64
# A decode task asks for other resources than the actors, which keeps Ray Data from fusing decoding into them, where
# it would run on one thread before each batch's inference (github.com/ray-project/ray/issues/54433). Half a CPU
# rather than more: part of its time is reading and Ray's serialisation, and an actor's CPUs idle while it waits
# for input.
DECODE_CPUS = 0.5
CONNECT_TIMEOUT = 30.0  # seconds to reach a running cluster; Ray itself keeps retrying for minutes


class RayClassifier:
    """An exported model classifying folders on a Ray cluster: ``predict_many`` and ``describe`` as
    :class:`~emotion.runtime.classifier.EmotionClassifier` has them. Make one with :meth:`connect`.

    Args:
        classifier: the model loaded on the driver; its file, options and preprocessing go to the workers.
        cpus: the CPUs of each node of the cluster.
        actors: inference actors (default: see :func:`pool_size`).
        threads: inference threads per actor (default: see :func:`pool_size`).
        address: the cluster's address as given, for :meth:`describe`.
    """

    def __init__(self, classifier: EmotionClassifier, cpus: list[float], actors: int | None = None,
                 threads: int | None = None, address: str = "local") -> None:
        self.actors, self.threads = pool_size(cpus, actors, threads)
        self.spec = classifier.spec
        described = classifier.describe()
        # What each actor loads: the driver's model file (absolute: workers have their own working folder).
        self.model = {key: described.get(key) for key in ("backend", "device", "precision", "mode", "cache_dir")}
        self.model["path"] = os.path.abspath(described["path"])
        self.description = {**described, "path": self.model["path"], "workers": self.actors * self.threads,
                            "ray": {"address": address, "nodes": len(cpus), "cpus": sum(cpus),
                                    "actors": self.actors, "actor_threads": self.threads}}

    @classmethod
    @contextlib.contextmanager
    def connect(cls, address: str, classifier: EmotionClassifier, actors: int | None = None,
                threads: int | None = None) -> Iterator["RayClassifier"]:
        """Join a cluster (``"auto"``: the one running on this machine; ``HOST:PORT``: its head) or, for ``"local"``,
        start a local Ray instance; disconnect (or stop it) when the block ends.

        Raises:
            UsageError: Ray is not installed, the cluster cannot be reached within :data:`CONNECT_TIMEOUT`, or
                the pool does not fit it.
        """
        try:
            import ray
            import ray.data
        except ImportError:
            raise UsageError(f"--ray needs Ray Data: {INSTALL}") from None
        options = {"logging_level": logging.ERROR, "log_to_driver": False}
        handler = signal.getsignal(signal.SIGTERM)
        if address == "local":  # not None: never a cluster that RAY_ADDRESS or an earlier `ray start` points to
            # In this thread: Ray's processes end with the thread that started them.
            ray.init(address="local", include_dashboard=False, **options)
        else:
            _join(ray, address, options)
        if signal.getsignal(signal.SIGTERM) is not handler:  # Ray's exits with status 15, past the command's clean-up
            signal.signal(signal.SIGTERM, handler)
        try:
            context = ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True  # answers in input order
            context.enable_progress_bars = False  # the report shows its own
            logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-run plan and timing lines
            cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]]
            yield cls(classifier, cpus, actors, threads, address)
        finally:
            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        """The model as the driver loaded it, ``workers`` the inference threads of the whole pool, and ``ray``
        the cluster and pool."""
        return self.description

    def predict_many(self, candidates: Iterable[Candidate]) -> Iterator[Prediction]:
        """Classify every candidate on the cluster, one :class:`Prediction` each, in input order; one with
        ``error`` set is passed through, and a file that cannot be read or decoded gets its reason.

        Raises:
            UsageError: the workers cannot load the model, or the Ray job failed.
        """
        import ray

        candidates = list(candidates)
        # Bytes, so names that are not UTF-8 survive; joined to this folder, as workers have their own.
        answers = self._classify([os.path.join(os.getcwdb(), os.fsencode(c.path)) for c in candidates if not c.error])
        try:
            for candidate in candidates:
                if candidate.error:
                    yield Prediction(None, None, candidate.path, candidate.error)
                    continue
                label, probability, error = next(answers)
                yield Prediction(label or None, None if error else float(probability), candidate.path, error or None)
        except ray.exceptions.RayActorError as exc:
            if not exc.actor_init_failed:
                raise UsageError(f"a Ray actor died: {one_line(exc)}") from None
            # The last line of the message is the actor's exception: "module.Class: reason".
            reason = one_line(exc).split(": ", 1)[-1]
            raise UsageError(f"the Ray workers cannot load the model {self.model['path']}: {reason}") from None
        except ray.exceptions.RayError as exc:
            raise UsageError(f"the Ray job failed: {one_line(exc)}") from None

    def _classify(self, paths: list[bytes]) -> Iterator[tuple[str, float, str]]:
        """(label, probability, error) for each path, in order, through Ray Data."""
        import ray

        if not paths:
            return
        dataset = ray.data.from_items([{"path": path} for path in paths],
                                      override_num_blocks=math.ceil(len(paths) / BLOCK))
        decoded = dataset.map_batches(decode, fn_kwargs={"spec": self.spec}, batch_size=BLOCK, num_cpus=DECODE_CPUS)
        answers = decoded.map_batches(Classify, fn_constructor_args=(self.model, self.threads), batch_size=BLOCK,
                                      compute=ray.data.ActorPoolStrategy(size=self.actors), num_cpus=self.threads)
        for batch in answers.iter_batches(batch_size=None, batch_format="numpy"):
            yield from zip(batch["label"], batch["probability"], batch["error"])


def pool_size(cpus: list[float], actors: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """The actors and the threads per actor for a cluster whose nodes have ``cpus``.

    By default half of the CPUs infer, in actors of half the smallest node's CPUs (one per node when the nodes
    are alike), and the rest decode: Ray Data runs the decode tasks beside the actors, and a pool that holds every
    CPU waits for them forever.

    Raises:
        UsageError: the pool asked for does not fit the nodes or leaves no CPU for decoding.
    """
    total = sum(cpus)
    threads = threads or max(1, int(min(cpus, default=0)) // 2)
    actors = actors or max(1, int(total) // 2 // threads)
    if sum(int(c) // threads for c in cpus) < actors or actors * threads >= total:
        nodes = ", ".join(f"{c:g}" for c in cpus)
        raise UsageError(f"{actors} actors of {threads} threads do not fit the cluster's nodes ({nodes} CPUs) with "
                         "a CPU left for decoding; lower --actors or --actor-threads")
    return actors, threads


def decode(batch: dict[str, np.ndarray], spec: PreprocessSpec) -> dict[str, np.ndarray]:
    """A Ray Data task: read and preprocess each file as local inference does; a failure stays with its row
    (``error``, an empty string when the image was decoded)."""
    images = np.zeros((len(batch["path"]), spec.height, spec.width, 3), np.uint8)
    errors = []
    for row, path in enumerate(batch["path"]):
        image, error = attempt(lambda name: preprocess(name, spec), os.fsdecode(path))
        if error is None:
            images[row] = image
        errors.append(error or "")
    return {"image": images, "error": np.array(errors, object)}


class Classify:
    """A Ray Data actor: the model, loaded once, classifying decoded images on ``threads`` threads.

    Ray sets ``OMP_NUM_THREADS=1`` in its workers, so OpenVINO is told its thread count; CPU pinning is off so
    that actors sharing a node do not pin their threads to the same cores.
    """

    def __init__(self, model: dict[str, Any], threads: int) -> None:
        openvino = model["backend"] == "openvino"
        config = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False} if openvino else None
        self.classifier = EmotionClassifier.load(model["path"], model["device"], model["backend"], model["precision"],
                                                 model["mode"], model["cache_dir"], config=config, workers=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Label and P(Positive) of each decoded row; a row that failed keeps its reason, as one failing here gets
        its own."""
        errors = batch["error"].astype(object)
        labels, probabilities = np.full(len(errors), "", object), np.full(len(errors), np.nan)
        decoded = np.flatnonzero(errors == "")
        for row, prediction in zip(decoded, self.classifier.predict_many(list(batch["image"][decoded]))):
            labels[row], probabilities[row] = prediction.label or "", prediction.probability
            errors[row] = prediction.error or ""
        return {"label": labels, "probability": probabilities, "error": errors}


def _join(ray: Any, address: str, options: dict[str, Any]) -> None:
    """``ray.init(address)`` within :data:`CONNECT_TIMEOUT`, with a one-line error otherwise."""
    if address != "auto":
        host, _, port = address.split("://")[-1].rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT).close()
        except ValueError:
            raise UsageError(f"--ray takes local, auto or HOST:PORT, got {address!r}") from None
        except OSError as exc:
            raise UsageError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None
    errors: list[Exception] = []

    def init() -> None:
        try:
            ray.init(address=address, **options)
        except Exception as exc:
            errors.append(exc)

    # In a thread, so that waiting can end: past the probe, Ray retries a cluster that does not answer for minutes.
    thread = threading.Thread(target=init, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT)
    if thread.is_alive() or errors:
        reason = one_line(errors[0]) if errors else f"no answer within {CONNECT_TIMEOUT:g} s"
        raise UsageError(f"cannot join the Ray cluster at {address}: {reason}")
