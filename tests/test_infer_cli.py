"""``emotion-infer``: table, JSON, CSV/JSONL output, exit statuses, broken files and models, Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _image_corpus import NON_UTF8_NAME, make_corpus
from _tiny_models import save_ir, tiny_info
from emotion.runtime import EmotionClassifier, Prediction, cli

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_CACHE_DIR", "")  # no compiled-model cache written under ~/.cache by tests
    monkeypatch.delenv("EMOTION_MODEL", raising=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos") / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(4)
    for name, tint in (("a.jpg", 0), ("b.png", 2), ("c.jpg", 0), ("sub/d.jpg", 2)):
        pixels = rng.integers(0, 120, (60, 80, 3), dtype=np.uint8)
        pixels[..., tint] += 120
        Image.fromarray(pixels, "RGB").save(folder / name)
    (folder / "notes.txt").write_text("not an image, not an error")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-corpus") / "mixed"
    make_corpus(folder)
    return folder


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_and_summary(capsys, photos, tiny_export):
    code, out, err = _run(capsys, photos, "--model", tiny_export)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["label", "probability", "path"]
    rows = [line.split(None, 2) for line in lines[1:]]
    assert [Path(r[2]).relative_to(photos).as_posix() for r in rows] == ["a.jpg", "b.png", "c.jpg", "sub/d.jpg"]
    with EmotionClassifier.load(tiny_export, cache_dir=None) as clf:
        for label, probability, path in rows:
            prediction = clf.predict(path)
            assert label == prediction.label and float(probability) == pytest.approx(prediction.probability, abs=1e-4)
    assert "4 of 4 files classified" in err and "images/s" in err
    assert f"Negative {sum(r[0] == 'Negative' for r in rows)}" in err
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--no-recursive")
    assert code == 0 and len(out.splitlines()) == 1 + 3


def test_json_on_stdout(capsys, photos, tiny_export):
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--json", "--mode", "latency")
    assert code == 0, err
    document = json.loads(out)
    assert [Path(r["path"]).name for r in document["results"]] == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    assert all(r["error"] is None and r["label"] in ("Negative", "Positive") for r in document["results"])
    summary = document["summary"]
    assert summary["files"] == summary["classified"] == 4 and summary["errors"] == 0
    assert sum(summary["labels"].values()) == 4
    assert document["model"]["name"] == "emotion" and document["model"]["precision"] == "f32"
    assert document["model"]["performance_hint"] == "LATENCY"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_output_files(capsys, photos, tiny_export, tmp_path, suffix):
    target = tmp_path / "out" / f"results{suffix}"
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--output", target, "--quiet")
    assert code == 0, err
    assert out == "" and err == ""  # --quiet: no table, no summary
    text = target.read_text(encoding="utf-8")
    if suffix == ".csv":
        records = list(csv.DictReader(io.StringIO(text)))
        assert list(records[0]) == ["path", "label", "probability", "error"]
    elif suffix == ".jsonl":
        records = [json.loads(line) for line in text.splitlines()]
    else:
        records = json.loads(text)["results"]
    assert [Path(r["path"]).name for r in records] == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    assert all(0.0 <= float(r["probability"]) <= 1.0 and not r["error"] for r in records)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary file left


def test_broken_files_exit_1_and_the_rest_is_written(capsys, corpus, tiny_export, tmp_path):
    target = tmp_path / "mixed.csv"
    code, out, err = _run(capsys, corpus, corpus / "does-not-exist.jpg", "--model", tiny_export, "-o", target)
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(target.read_bytes().decode("utf-8", "surrogateescape"))))
    failed = {os.path.basename(r["path"]): r["error"] for r in rows if r["error"]}
    assert {"zero.jpg", "truncated.jpg", "text.jpg", "huge.png", "broken_link.jpg", "loop_a.jpg",
            "does-not-exist.jpg"} <= set(failed)
    assert failed["does-not-exist.jpg"] == "no such file or folder"
    classified = [r for r in rows if not r["error"]]
    assert len(classified) >= 10 and all(r["label"] and r["probability"] for r in classified)
    for name, reason in failed.items():
        assert f"{name}: {reason}" in err  # each failure reported on stderr with its reason
    assert "Traceback" not in err and f"{len(failed)} errors" in err
    # A name that is not UTF-8: shown escaped on the terminal, kept byte for byte in the CSV.
    assert "caf\\xe9-\\xff.jpg" in out
    assert NON_UTF8_NAME in target.read_bytes()


def test_non_utf8_names_in_json(capsys, corpus, tiny_export, tmp_path):
    target = tmp_path / "mixed.jsonl"
    code, out, err = _run(capsys, corpus, "--model", tiny_export, "--json", "-o", target)
    assert code == 1
    document = json.loads(out)
    paths = [os.fsencode(r["path"]) for r in document["results"]]
    assert os.path.join(os.fsencode(corpus), NON_UTF8_NAME) in paths  # \udcXX escapes give the bytes back
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(document["results"]) and all(json.loads(line) for line in lines)
    assert document["summary"]["errors"] == sum(1 for r in document["results"] if r["error"])


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-bad-models")
    corrupt = root / "corrupt.xml"
    corrupt.write_text("<html>not a model</html>")
    return {
        "missing": root / "nope" / "model.xml",
        "corrupt": corrupt,
        "no metadata": save_ir(root / "plain", metadata=None),
        "wrong input": save_ir(root / "float", input_type="f32"),
        "wrong size": save_ir(root / "size", metadata=tiny_info(input_width=64).to_strings()),
    }


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("corrupt", "not an OpenVINO IR"),
        ("no metadata", "no emotion-edge metadata"),
        ("wrong input", "expected uint8 NHWC"),
        ("wrong size", "metadata says 32x64"),
    ],
)
def test_model_errors_exit_2_with_one_line(capsys, photos, broken_models, kind, message):
    code, out, err = _run(capsys, photos, "--model", broken_models[kind])
    assert code == 2 and out == ""
    assert err.startswith("emotion-infer: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_default_model_environment_and_exports_folder(capsys, photos, tiny_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, photos)
    assert code == 2 and "emotion-export RUN --out exports/NAME" in err and "EMOTION_MODEL" in err
    (tmp_path / "exports").mkdir()
    os.symlink(tiny_export, tmp_path / "exports" / "latest")
    code, out, err = _run(capsys, photos, "--json", "--variant", "int8")
    assert code == 0, err
    assert json.loads(out)["model"]["model_precision"] == "int8"
    monkeypatch.setenv("EMOTION_MODEL", str(tmp_path / "missing-model"))
    code, out, err = _run(capsys, photos)
    assert code == 2 and "missing-model does not exist" in err


def test_usage_errors_exit_2(capsys, photos, tiny_export, tmp_path):
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--output", "results.txt")
    assert code == 2 and ".csv, .jsonl, .json or .parquet" in err
    (tmp_path / "taken.csv").mkdir()  # found before any image is classified
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--output", tmp_path / "taken.csv")
    assert code == 2 and out == "" and err.strip().endswith("is a folder; name a file ending in .csv, .jsonl, .json or .parquet")
    with pytest.raises(SystemExit) as exc_info:
        cli.main([str(photos), "--precision", "int3"])
    assert exc_info.value.code == 2
    with pytest.raises(SystemExit) as exc_info:
        cli.main([])
    assert exc_info.value.code == 2


def test_a_missing_optional_library_names_its_extra_and_a_missing_module_of_ours_is_a_bug(monkeypatch, capsys):
    """Every command runs on guard: a library of an extra that is not installed is one line with the pip command
    (the serve and bench tests show it through their commands); any other missing module keeps its traceback."""
    from emotion.runtime.console import guard

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # how a module that is not installed looks to `import`

    @guard(prog="emotion-x")
    def needs_export() -> int:
        import tf2onnx  # noqa: F401
        return 0

    assert needs_export() == 2
    assert capsys.readouterr().err == "emotion-x: error: tf2onnx is not installed: pip install 'emotion-edge[export]'\n"

    @guard(prog="emotion-x")
    def broken() -> int:
        import emotion.runtime.no_such_module  # noqa: F401
        return 0

    with pytest.raises(ModuleNotFoundError):
        broken()


def test_ctrl_c_leaves_no_partial_output(capsys, photos, tiny_export, tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_text("previous results\n")

    def interrupted(self, images, window=None):
        for count, _ in enumerate(images):
            if count == 2:
                raise KeyboardInterrupt
            yield Prediction("Positive", 0.9, Path("x.jpg"))

    monkeypatch.setattr(EmotionClassifier, "predict_many", interrupted)
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--output", target)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert target.read_text() == "previous results\n"  # untouched: never half-written
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_onnxruntime_backend_from_the_command_line(capsys, photos, tiny_export):
    code, out, err = _run(capsys, photos, "--model", tiny_export, "--backend", "onnxruntime", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["model"]["backend"] == "onnxruntime" and document["model"]["path"].endswith("emotion.onnx")
    code, base, _ = _run(capsys, photos, "--model", tiny_export, "--json")
    expected = [r["probability"] for r in json.loads(base)["results"]]
    assert [r["probability"] for r in document["results"]] == pytest.approx(expected, abs=1e-5)


def _entry_point(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMOTION_CACHE_DIR": ""}
    env.pop("EMOTION_MODEL", None)
    code = "import sys; from emotion.runtime.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, env=env, timeout=120, **kwargs
    )


def test_real_photos_through_the_entry_point(tiny_export, tmp_path):
    folder = SHARED_DATA / "twitter-sample"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine")
    result = _entry_point(folder, "--model", tiny_export, "--json", "--output", tmp_path / "r.csv")
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    files = [p for label in ("Negative", "Positive") for p in (folder / label).iterdir() if p.is_file()]
    assert document["summary"]["classified"] == len(files) and document["summary"]["errors"] == 0
    assert len((tmp_path / "r.csv").read_text().splitlines()) == len(files) + 1
    assert b"\r" not in result.stderr and b"files classified" in result.stderr


def test_entry_point_model_error_has_no_traceback(tmp_path):
    bad = tmp_path / "model.xml"
    bad.write_text("<net>")
    result = _entry_point(tmp_path, "--model", bad)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("emotion-infer: error:") and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    """5,000 links to one 500x400 JPEG: several seconds of work, to interrupt."""
    folder = tmp_path_factory.mktemp("many") / "photos"
    folder.mkdir()
    rng = np.random.default_rng(9)
    source = folder.parent / "source.jpg"
    Image.fromarray(rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)).save(source, quality=90)
    for i in range(5000):
        os.symlink(source, folder / f"{i:05d}.jpg")
    return folder


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_exits_cleanly_and_leaves_no_partial_output(many_photos, tiny_export, tmp_path, signum, code):
    for attempt in range(3):
        target = tmp_path / f"out{attempt}.csv"
        env = {**os.environ, "EMOTION_CACHE_DIR": ""}
        process = subprocess.Popen([sys.executable, "-m", "emotion.runtime.cli", many_photos, "--model", tiny_export,
                                    "--output", target, "--quiet"], stderr=subprocess.PIPE, env=env)
        time.sleep(2.0 + 0.3 * attempt)  # start-up, then some of the run
        process.send_signal(signum)
        err = process.communicate(timeout=60)[1].decode()
        assert process.returncode == code, err
        assert "interrupted; nothing half-written" in err and "terminate called" not in err and "Traceback" not in err
        assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_a_reader_that_stops_early_loses_the_table_but_not_the_output_file(many_photos, tiny_export, tmp_path):
    """``emotion-infer photos/ --output out.csv | head -1``: the file is the result and is written whole."""
    target = tmp_path / "out.csv"
    process = subprocess.Popen([sys.executable, "-m", "emotion.runtime.cli", many_photos, "--model", tiny_export,
                                "--output", target], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "EMOTION_CACHE_DIR": ""})
    assert process.stdout.readline().split() == [b"label", b"probability", b"path"]
    process.stdout.close()  # as head does; 5,000 lines of table do not fit the pipe
    err = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 0, err
    assert len(target.read_text().splitlines()) == 5001


def test_leaving_a_stream_early_and_exiting_does_not_abort(many_photos, tiny_export):
    script = (
        "import sys\nfrom emotion.runtime import EmotionClassifier, discover\n"
        "clf = EmotionClassifier.load(sys.argv[1], mode='throughput', cache_dir=None)\n"
        "for i, p in enumerate(clf.predict_many(discover([sys.argv[2]]))):\n"
        "    if i == 200:\n        break\n"
        "print('left')\n"
    )
    for _ in range(5):
        result = subprocess.run([sys.executable, "-c", script, tiny_export, many_photos], capture_output=True, timeout=60)
        assert result.returncode == 0 and result.stdout == b"left\n", result.stderr.decode()


def test_a_very_deep_folder_is_walked_without_recursion(capsys, tiny_export, tmp_path):
    deep = str(tmp_path / "top")
    os.mkdir(deep)
    for _ in range(1100):  # os.makedirs and Path.mkdir(parents=True) recurse too
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    image = Image.fromarray(np.full((40, 50, 3), 120, np.uint8))
    image.save(os.path.join(deep, "bottom.png"))
    image.save(tmp_path / "top" / "beside.png")
    try:
        code, out, err = _run(capsys, tmp_path / "top", "--model", tiny_export, "--json")
        assert code == 0, err
        assert sorted(Path(r["path"]).name for r in json.loads(out)["results"]) == ["beside.png", "bottom.png"]
    finally:  # shutil.rmtree recurses as well: pytest could not clean this up
        os.unlink(os.path.join(deep, "bottom.png"))
        while deep != str(tmp_path / "top"):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


def test_outputs_get_the_permissions_the_umask_gives(tmp_path):
    """As open() and mkdir() would: the temporary copies are made with the umask, never by changing it."""
    from emotion.runtime.atomic import atomic_open
    from emotion.train.atomic import atomic_directory

    previous = os.umask(0o027)
    try:
        with atomic_open(tmp_path / "out.csv") as handle:
            handle.write("x\n")
        with atomic_directory(tmp_path / "run") as folder:
            (folder / "run.json").write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "run"]
