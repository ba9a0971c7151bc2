"""``emotion-infer --ray``: the same answers, reasons, order and outputs as local runs, on real Ray.

The default suite starts a small local Ray instance; ``-m slow`` adds a two-node cluster on loopback addresses
(``ray start --head`` and a second ``ray start --address``, one CPU each).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from _image_corpus import NON_UTF8_NAME, make_corpus
from emotion.runtime import EmotionClassifier, cli, cluster, discover
from emotion.runtime.console import UsageError

# Ray's local instance takes this machine's network address unless told it has no cluster to join: the tests'
# instance stays on the loopback address. Read when Ray is imported, so it is set before.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch):
    monkeypatch.setenv("EMOTION_CACHE_DIR", "")  # no compiled-model cache written under ~/.cache by tests
    monkeypatch.delenv("EMOTION_MODEL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Awkward files (broken, truncated, not images, a name that is not UTF-8) beside good ones."""
    folder = tmp_path_factory.mktemp("ray-corpus") / "mixed"
    make_corpus(folder)
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("a.jpg", (200, 30, 30)), ("b.png", (30, 30, 200))):
        Image.new("RGB", (60, 50), colour).save(folder / name)
    return folder


def _run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _same_results(ray_results: list[dict], local_results: list[dict]) -> None:
    assert [r["path"] for r in ray_results] == [r["path"] for r in local_results]
    assert [(r["label"], r["error"]) for r in ray_results] == [(r["label"], r["error"]) for r in local_results]
    for ours, theirs in zip(ray_results, local_results):
        assert (ours["probability"] is None) == (theirs["probability"] is None)
        if ours["probability"] is not None:
            assert abs(ours["probability"] - theirs["probability"]) <= 1e-6


@needs_ray
def test_a_local_ray_run_answers_as_local_inference_does(capsys, corpus, tiny_export, tmp_path):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    paths = [corpus, corpus / "does-not-exist.jpg"]
    code, out, err = _run(capsys, *paths, "--model", tiny_export, "--json")
    assert code == 1, err
    local = json.loads(out)
    target = tmp_path / "results.parquet"
    code, out, err = _run(capsys, *paths, "--model", tiny_export, "--json", "--output", target, "--ray")
    assert code == 1, err
    document = json.loads(out)
    _same_results(document["results"], local["results"])
    assert document["summary"]["errors"] == local["summary"]["errors"] >= 7
    assert os.path.join(os.fsencode(corpus), NON_UTF8_NAME) in [os.fsencode(r["path"]) for r in document["results"]]
    for result in document["results"]:
        if result["error"]:
            assert f"{cli.display_path(result['path'])}: {result['error']}" in err
    assert "Traceback" not in err
    assert document["model"]["ray"]["address"] == "local" and document["model"]["workers"] == 1
    # Parquet: the CSV's columns and rows, as one table.
    table = pyarrow_parquet.read_table(target).to_pylist()
    assert list(table[0]) == list(cli.COLUMNS)
    _same_results(table, [{**r, "path": cli.display_path(r["path"])} for r in local["results"]])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


@needs_ray
def test_workers_that_cannot_read_the_model_give_one_clear_error(tiny_export, tmp_path, photos):
    model = shutil.copytree(tiny_export / "emotion", tmp_path / "model")
    with EmotionClassifier.load(model, cache_dir=None) as classifier, \
            cluster.RayClassifier.connect("local", classifier) as on_ray:
        shutil.rmtree(model)  # the driver has its model; the workers, as on a disk they do not share, have none
        message = f"the Ray workers cannot load the model {model / '1' / 'model.xml'}: model "
        with pytest.raises(UsageError, match=re.escape(message)):
            list(on_ray.predict_many(discover([photos])))


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "cannot reach a Ray cluster at 127.0.0.1:1: Connection refused"),
    ("photos/", "--ray takes local, auto or HOST:PORT, got 'photos/'"),
])
@needs_ray
def test_an_address_that_is_not_a_cluster_is_one_line_and_exit_2(capsys, photos, tiny_export, address, message):
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--ray", address)
    assert code == 2 and out == ""
    assert err == f"emotion-infer: error: {message}\n"


def test_without_ray_the_error_names_the_extra(capsys, photos, tiny_export, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the package is not installed
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--ray")
    assert code == 2 and err == "emotion-infer: error: --ray needs Ray Data: pip install 'emotion-edge[ray]'\n"


def test_local_runs_never_import_ray(photos, tiny_export):
    script = ("import sys; import emotion.runtime.cluster; from emotion.runtime import cli; "
              "code = cli.main(sys.argv[1:]); print(code, sorted({'ray', 'pyarrow'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script, photos, "--model", tiny_export, "--quiet", "--no-cache"],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout == "0 []\n", result.stderr


@pytest.mark.parametrize("cpus, actors, threads, expected", [
    ([2.0], None, None, (1, 1)),        # the 2-core box: one actor, a CPU left for decoding
    ([1.0, 1.0], None, None, (1, 1)),
    ([16.0] * 4, None, None, (4, 8)),   # one actor per node on half of its cores
    ([16.0] * 4, 16, 2, (16, 2)),
])
def test_pool_size_leaves_cpus_for_decoding(cpus, actors, threads, expected):
    assert cluster.pool_size(cpus, actors, threads) == expected


@pytest.mark.parametrize("cpus, actors, threads", [([2.0], 2, 1), ([1.0], None, None), ([4.0, 4.0], 1, 5)])
def test_a_pool_that_cannot_run_is_refused(cpus, actors, threads):
    with pytest.raises(UsageError, match="with a CPU left for decoding"):
        cluster.pool_size(cpus, actors, threads)


def test_local_runs_write_parquet_too(capsys, photos, tiny_export, tmp_path):
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "results.parquet"
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--json", "--output", target)
    assert code == 0, err
    assert pyarrow_parquet.read_table(target).to_pylist() == json.loads(out)["results"]


# ---- a two-node cluster on loopback addresses (slow: ray start twice) ----

LOOPBACK = "127.0.0.2"  # Ray replaces 127.0.0.1 by the machine's network address; the rest of 127/8 it keeps


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A head node and a second node of one CPU each, stopped at the end: the inference actor fills one node,
    so the decoding runs on the other and every image crosses from node to node.

    Yields the head's address and the environment that reaches it (Ray's token authentication on).
    """
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # that would refuse a second node
    address = f"{LOOPBACK}:{_free_port()}"
    logs = tmp_path_factory.mktemp("ray-logs")
    # Ray's sessions, and its note of the latest cluster (which `ray.init("auto")` reads), go here, not /tmp/ray;
    # a short path, as Ray's sockets live there too.
    temp = tempfile.mkdtemp(prefix="ray-")

    def start(name: str, *options: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "wb") as log:
            return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--block",
                                     "--disable-usage-stats", f"--node-ip-address={LOOPBACK}", "--num-cpus=1",
                                     f"--temp-dir={temp}", *options], env=env, stdout=log, stderr=subprocess.STDOUT)

    nodes = [start("head", "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false")]
    try:
        _wait_for(address, env, nodes=1)
        nodes.append(start("second", f"--address={address}"))
        _wait_for(address, env, nodes=2)
        yield address, env
    finally:
        for node in reversed(nodes):  # `ray start --block` stops the processes it started on SIGTERM
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(90)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(address: str, env: dict[str, str], nodes: int) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    for _ in range(60):
        result = subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, timeout=120)
        if result.stdout.strip() == str(nodes).encode():
            return
        time.sleep(2)
    raise RuntimeError(f"the Ray cluster at {address} did not come up with {nodes} nodes")


def _infer(*args, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emotion.runtime.cli", *map(str, args)],
                          env={**env, "EMOTION_CACHE_DIR": ""}, capture_output=True, timeout=600, **kwargs)


@needs_ray
@pytest.mark.slow
def test_a_two_node_cluster_answers_as_local_inference_does(two_nodes, corpus, tiny_export, tmp_path):
    address, env = two_nodes
    # A relative path: the workers' working folder is not the driver's.
    options = {"env": env, "cwd": corpus.parent}
    local = _infer(corpus.name, "--model", tiny_export, "--output", tmp_path / "local.jsonl", "--quiet", **options)
    assert local.returncode == 1, local.stderr.decode()
    result = _infer(corpus.name, "--model", tiny_export, "--output", tmp_path / "ray.jsonl", "--ray", address, **options)
    assert result.returncode == 1, result.stderr.decode()
    read = lambda name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
    _same_results(read("ray.jsonl"), read("local.jsonl"))
    assert b"files classified" in result.stderr and b"Traceback" not in result.stderr


@needs_ray
@pytest.mark.slow
def test_interrupting_a_cluster_run_leaves_no_partial_output(two_nodes, tiny_export, tmp_path):
    address, env = two_nodes
    folder = tmp_path / "many"
    folder.mkdir()
    Image.new("RGB", (500, 400), (120, 60, 30)).save(tmp_path / "source.jpg")
    for i in range(20000):
        os.symlink(tmp_path / "source.jpg", folder / f"{i:05d}.jpg")
    target = tmp_path / "out" / "results.csv"
    process = subprocess.Popen([sys.executable, "-m", "emotion.runtime.cli", folder, "--model", tiny_export, "--output",
                                target, "--quiet", "--ray", address], env={**env, "EMOTION_CACHE_DIR": ""},
                               stderr=subprocess.PIPE)
    time.sleep(15)  # connected, and classifying
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 130, err
    assert "interrupted; nothing half-written" in err and "Traceback" not in err
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
