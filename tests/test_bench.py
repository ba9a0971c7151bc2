"""emotion-bench on a tiny trained run and its real export: every row, sane figures, the parity gate, bad input.

The bench runs with one round, short timings and 1-second benchmark_app runs; the whole file takes about two
minutes on two busy cores (most of it TensorFlow start-up in the Keras worker and cold-start processes).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from emotion.benchmarks import cli
from emotion.benchmarks import coldstart
from emotion.benchmarks.ray_speed import infer
from emotion.benchmarks.serve_load import ServerProcess, wait_ready
from emotion.benchmarks.timing import interleave, parse_benchmark_app, summarize
from emotion.runtime.console import UsageError
from emotion.export.formats import FORMATS, mismatch, parse_formats
from emotion.export.openvino_export import cpu_supports_bf16
from emotion.export.parity import DEFAULT_LIMITS, Limits, Verdict, compare, judge

FAST = ["--repeats", "1", "--seconds", "0.2", "--ba-seconds", "1", "--warmup", "1", "--e2e-images", "16", "-q"]


@pytest.fixture(scope="module")
def bench_export(tiny_run, tmp_path_factory) -> Path:
    """The real export of ``tiny_run`` (fp32, fp16, int8 IRs and ONNX)."""
    from emotion.export import export_model

    out = tmp_path_factory.mktemp("bench-export") / "export"
    export_model(tiny_run, out, progress=False)
    return out


@pytest.fixture(scope="module")
def other_export(tiny_run, tmp_path_factory) -> Path:
    """The FP32 export of a different model of the same architecture and size: a re-initialised seed CNN."""
    from emotion.export import export_model
    from emotion.train import models
    from emotion.train.model_io import read_info, save_model

    info = read_info(tiny_run / "model.keras")
    run = tmp_path_factory.mktemp("other-run") / "run"
    run.mkdir()
    save_model(models.build("seed", (info.input_height, info.input_width)), run / "model.keras", info)
    for name in ("split.csv", "run.json"):
        shutil.copy(tiny_run / name, run / name)
    out = run.parent / "export"
    export_model(run, out, precisions=("fp32",), progress=False)
    return out


def _bench(capsys, *args: str) -> tuple[int, dict]:
    code = cli.main([*map(str, args), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _truncated_jpeg(path: Path, source: Path) -> Path:
    """The first half of the JPEG ``source`` at ``path``: its header sniffs as an image, it does not decode."""
    content = source.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return path


# -- the real model: every row, sane figures, gate passes ------------------------------------------------------
def test_bench_every_format_on_the_real_export(tiny_run, synth_data, bench_export, tmp_path, capsys):
    out = tmp_path / "bench"
    # FP32 keeps its exact-parity defaults. The reduced-precision limits are widened: 16 validation images
    # give AUC steps of about 1/63, so one swapped pair already exceeds the default 0.005.
    code, doc = _bench(capsys, tiny_run, "--data", synth_data, "--export", bench_export, "--out", out,
                       "--name", "tiny", "--gate-bf16-auc", "0.1", "--gate-fp16-auc", "0.1",
                       "--gate-int8-auc", "0.1", *FAST)
    assert code == 0, doc.get("gate")
    assert doc["gate"]["passed"] is True
    rows = {row["format"]: row for row in doc["formats"]}
    assert list(rows) == list(FORMATS)  # every row, in order
    assert doc["images"]["count"] == 16 and doc["images"]["input_size"] == [128, 160]
    for name, row in rows.items():
        if name == "openvino-bf16" and not cpu_supports_bf16():
            assert row["status"] == "skipped" and row["check"]["verdict"] == "measured"
            continue
        parity, t = row["check"]["parity"], row["timings"]
        assert row["status"] == "ok", (name, row["reason"])
        assert row["size_mb"] > 0
        assert 0 <= parity["accuracy"] <= 1 and 0 <= parity["balanced_accuracy"] <= 1 and 0 <= parity["roc_auc"] <= 1
        lat = t["latency_ms"]
        assert 0 < lat["p50"]["median"] <= lat["p90"]["median"] <= lat["p99"]["median"] < 5000, name
        assert t["throughput"]["median"] > 0 and t["e2e"]["median"] > 0, name
        assert 0 < t["cold_start_s"]["median"] < 120 and t["peak_rss_mb"]["median"] > 20, name
        assert row["check"]["verdict"] in ("pass", "measured"), name
        if FORMATS[name].openvino:
            ba = t["benchmark_app"]
            assert ba["latency_median_ms"]["median"] > 0 and ba["throughput"]["median"] > 0, name
            assert _finite(t["ratios"]["latency"]) and _finite(t["ratios"]["throughput"]), name
        # the files read by predict_many gave the same answers as the arrays
        assert t["e2e_max_abs_diff"] < 1e-3 if name != "openvino-bf16" else True
    keras = rows["keras"]["check"]["parity"]
    assert keras["max_abs_dp"] == 0 and keras["label_agreement"] == 100
    assert rows["keras"]["timings"]["other_calls_ms"]["model_predict_ms"] > 0
    for name in ("onnxruntime", "openvino-fp32"):
        parity = rows[name]["check"]["parity"]
        assert parity["max_abs_dp"] < 1e-4 and parity["label_agreement"] + 100 * parity["ties"] / 16 == 100
        assert parity["d_auc"] <= 1e-4
    assert rows["openvino-int8"]["size_mb"] < rows["openvino-fp16"]["size_mb"] < rows["openvino-fp32"]["size_mb"]
    hardware = doc["hardware"]
    assert hardware["cores"] >= 1 and "AVX2" in hardware["isa"] and hardware["versions"]["openvino"]
    # the three outputs
    for suffix in (".md", ".json", ".png"):
        assert (out / f"tiny{suffix}").is_file()
    text = (out / "tiny.md").read_text()
    for name in FORMATS:
        assert f"`{name}`" in text
    assert "benchmark_app" in text and "Hardware and software" in text and "PASS" in text
    assert json.loads((out / "tiny.json").read_text())["gate"]["passed"] is True
    assert text.startswith("# emotion-bench") and "Command: `emotion-bench " in text
    assert (out / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- another model's export: the gate must fail ----------------------------------------------------------------
def test_gate_fails_for_another_models_export(tiny_run, synth_data, other_export, tmp_path, capsys):
    code, doc = _bench(capsys, tiny_run, "--data", synth_data, "--export", other_export, "--out", tmp_path,
                       "--formats", "onnxruntime", "openvino-fp32", "--no-cold-start", "--no-ceiling", *FAST)
    assert code == 1
    assert doc["gate"]["passed"] is False
    assert set(doc["gate"]["failures"]) == {"onnxruntime", "openvino-fp32"}
    rows = {row["format"]: row for row in doc["formats"]}
    assert rows["openvino-fp32"]["status"] == "ok"  # it ran: the figures show how far off it is
    assert rows["openvino-fp32"]["check"]["parity"]["max_abs_dp"] > 1e-4
    assert "FAIL" in (tmp_path / "benchmark.md").read_text()


def test_an_export_of_another_input_size_is_a_mismatch_and_fails_the_gate():
    from emotion.runtime import ModelInfo

    run = ModelInfo(input_height=128, input_width=160)
    assert mismatch(run, run) is None
    problem = mismatch(run, run.replace(input_height=32, input_width=40))
    assert "32x40" in problem and "128x160" in problem
    assert "threshold" in mismatch(run, run.replace(threshold=0.42))
    check = judge("openvino-fp32", "fp32", None, DEFAULT_LIMITS, error=f"error: {problem}")
    assert check.verdict is Verdict.FAIL and problem in check.problems[0]


# -- bad input: one line, exit 2 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["no-run", "no-export", "not-an-export", "unlabelled-data", "missing-data",
                                  "unknown-format"])
def test_bad_input_exits_2(case, tiny_run, synth_data, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    run, data, export, extra = tiny_run, synth_data, tmp_path / "empty", []
    if case == "no-run":
        run = tmp_path / "nope"
    elif case == "no-export":
        export = tmp_path / "nope"
    elif case == "unlabelled-data":
        data = tmp_path / "empty"  # a folder without Negative/ and Positive/
    elif case == "missing-data":
        data = tmp_path / "nope"
    elif case == "unknown-format":
        extra = ["--formats", "openvino-fp32", "tensorrt"]
    # "not-an-export": the empty folder given as --export
    code = cli.main([str(run), "--data", str(data), "--export", str(export), "--out", str(tmp_path / "o"), "-q",
                     *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("emotion-bench: error: "), err
    if case == "unknown-format":
        assert "tensorrt" in err[0] and all(name in err[0] for name in FORMATS)
    if case == "unlabelled-data":
        assert "has no Negative/ or Positive/ folder" in err[0]
    assert not (tmp_path / "o").exists()


# -- pieces ------------------------------------------------------------------------------------------------------
def test_gate_limits_are_finite_non_negative_numbers(capsys):
    parser = cli.parser_for(None)
    assert parser.parse_args(["run", "--gate-int8-auc", "0"]).gate_int8_auc == 0.0
    for bad in ("-0.1", "nan", "inf", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "--gate-int8-auc", bad])
        assert f"expected a non-negative number, got {bad!r}" in capsys.readouterr().err


def test_parse_formats():
    assert parse_formats(None) == list(FORMATS.values())
    assert [f.name for f in parse_formats(["openvino-int8,keras"])] == ["keras", "openvino-int8"]
    with pytest.raises(ValueError, match="known formats"):
        parse_formats(["openvino"])


def test_rounds_start_each_round_with_the_next_step():
    rounds = interleave({name: lambda: None for name in "abc"}, 4)
    assert [r["order"] for r in rounds] == [list("abc"), list("bca"), list("cab"), list("abc")]
    calls = []
    rounds = interleave({name: lambda name=name: calls.append(name) or name.upper() for name in "ab"}, 3)
    assert calls == list("abbaab")
    assert rounds == [{"order": ["a", "b"], "a": "A", "b": "B"}, {"order": ["b", "a"], "a": "A", "b": "B"},
                      {"order": ["a", "b"], "a": "A", "b": "B"}]


def test_cold_start_summary_keeps_failed_runs_as_errors():
    good = {"since_spawn_seconds": 2.0, "import_seconds": 0.5, "load_seconds": 1.0, "first_result_seconds": 0.1,
            "peak_rss_mb": 100.0}
    s = coldstart.summary([good, {**good, "since_spawn_seconds": 4.0}, {"error": "exit status 1: boom"}])
    assert s["cold_start_s"]["median"] == 3.0 and s["cold_start_s"]["n"] == 2
    assert s["cold_start_parts_s"] == {"import_seconds": 0.5, "load_seconds": 1.0, "first_result_seconds": 0.1}
    assert s["peak_rss_mb"]["median"] == 100.0 and s["cold_start_errors"] == ["exit status 1: boom"]


def test_benchmark_app_latencies_from_its_output_the_rest_from_its_json_report():
    # what the installed benchmark_app printed and reported for a 32x40 IR (-hint latency -t 1): under 1 ms the
    # output keeps 0.01 us, the JSON report 0.01 ms
    printed = """[ INFO ] Count:            25071 iterations
[ INFO ] Duration:         1000.04 ms
[ INFO ] Latency:
[ INFO ]    Median:        24.16 us
[ INFO ]    Average:       24.53 us
[ INFO ]    Min:           15.44 us
[ INFO ]    Max:           624.40 us
[ INFO ] Throughput:   25069.96 FPS
"""
    report = {"configuration_setup": {"number of parallel infer requests": "1"},
              "execution_results": {"compile model time (ms)": "44.44", "total number of iterations": "25071",
                                    "latency (ms)": "0.02", "avg latency": "0.02", "min latency": "0.02",
                                    "max latency": "0.62", "throughput": "25069.96"}}
    values = parse_benchmark_app(report, printed)
    assert values == pytest.approx({"median_latency_ms": 0.02416, "average_latency_ms": 0.02453,
                                    "min_latency_ms": 0.01544, "max_latency_ms": 0.6244, "throughput": 25069.96,
                                    "iterations": 25071, "compile_ms": 44.44, "requests": 1})
    # at 1 ms and over, the output says ms; a latency not printed comes from the report
    values = parse_benchmark_app(report, "[ INFO ]    Median:        27.45 ms\n")
    assert values["median_latency_ms"] == 27.45 and values["average_latency_ms"] == 0.02
    missing = parse_benchmark_app({"execution_results": {"latency (ms)": "nan", "throughput": "?"}})
    assert missing["median_latency_ms"] is None and missing["throughput"] is None and missing["requests"] is None
    assert parse_benchmark_app(None) == dict.fromkeys(missing)


def test_summarize_and_gate_rules():
    s = summarize([3.0, 1.0, None, float("nan"), 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert summarize([])["median"] is None
    labels = np.array([0, 1, 1, 0])
    reference = np.array([0.2, 0.8, 0.7, 0.3])

    def verdict(name, probabilities, limits=DEFAULT_LIMITS):
        return judge(name, FORMATS[name].parity_class, compare(probabilities, reference, labels, 0.5), limits).verdict

    assert verdict("openvino-fp32", reference + 1e-6) is Verdict.PASS
    assert verdict("openvino-fp32", np.array([0.2, 0.8, 0.4, 0.3])) is Verdict.FAIL  # a decided label flipped
    assert verdict("onnxruntime", reference + 2e-4) is Verdict.FAIL  # |dP| over 1e-4
    assert verdict("openvino-int8", reference + 0.05) is Verdict.PASS  # same ranking: |dAUC| 0
    assert verdict("openvino-int8", np.array([0.8, 0.2, 0.7, 0.3])) is Verdict.FAIL
    assert verdict("openvino-fp16", np.array([0.8, 0.2, 0.7, 0.3]), {"fp16": Limits(max_d_auc=1.0)}) is Verdict.PASS
    assert verdict("keras", reference) is Verdict.MEASURED


def test_infer_speed_smoke(bench_export, synth_data, tmp_path, capsys):
    """On photos with a truncated JPEG first (it sniffs as an image): left out, and said so."""
    data = shutil.copytree(synth_data, tmp_path / "data")
    bad = _truncated_jpeg(data / "000-truncated.jpg", next((data / "Positive").glob("*.jpg")))
    code = cli.main(["infer-speed", str(bench_export), "--data", str(data), "--files", "24", "--repeats", "1",
                     "--seconds", "1", "--no-cold-start", "--json", "-q", "--out", str(tmp_path / "speed.v2.md")])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["distinct_images"] == 80 and doc["notes"][0].startswith(f"1 files of {data} could not be decoded")
    assert str(bad) in doc["notes"][0] and doc["started"] and doc["seconds"] > 0 and doc["hardware"]["hints"]
    s = doc["summary"]
    for key in ("decode_images_per_second", "benchmark_app_throughput", "folder_images_per_second",
                "ceiling_images_per_second", "folder_ratio", "latency_p50_ms", "benchmark_app_latency_ms",
                "latency_ratio"):
        assert s[key]["median"] > 0, key
    assert s["ceiling_images_per_second"]["median"] < min(s["decode_images_per_second"]["median"],
                                                          s["benchmark_app_throughput"]["median"])
    assert set(doc["targets"]) == {"folder", "latency"}
    assert (tmp_path / "speed.v2.md").is_file() and (tmp_path / "speed.v2.json").is_file()  # the dotted name kept
    assert "Command: `emotion-bench infer-speed " in (tmp_path / "speed.v2.md").read_text()


def test_infer_speed_on_a_model_that_does_not_load_is_one_line(tiny_export, synth_data, tmp_path, capsys):
    export = shutil.copytree(tiny_export, tmp_path / "export")
    (export / "emotion" / "1" / "model.bin").write_bytes(b"not weights")
    assert cli.main(["infer-speed", str(export), "--data", str(synth_data), "--files", "4", "-q"]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("emotion-bench: error: openvino-fp32 cannot load: "), error


def test_serve_load_smoke(bench_export, synth_data, tmp_path, capsys):
    """The real server under a tiny load, both protocols, beside the in-process baseline; the started server
    serves the model under --model-name."""
    code = cli.main(["serve-load", "--model", str(bench_export), "--images", str(synth_data), "--files", "3",
                     "--clients", "1,2", "--count", "2", "--baseline-images", "4", "--protocol", "both", "--json",
                     "-q", "--out", str(tmp_path / "load.md"), "--model-name", "tiny-name"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["server_exit_status"] == 0
    assert [(level["protocol"], level["clients"]) for level in doc["levels"]] == [
        ("predict", 1), ("predict", 2), ("kserve", 1), ("kserve", 2)]
    for level in doc["levels"]:
        assert level["ok"] == level["planned"] == 2 * level["clients"] and not level["errors"], level
        assert level["requests_per_second"] > 0 and 0 < level["latency_ms"]["p50"] <= level["latency_ms"]["max"]
        cpu = level["cpu_ms_per_request"]  # the server's in clock ticks (10 ms): a tiny level may read 0
        assert cpu["server"] is not None and cpu["server"] >= 0 and cpu["load_generator"] > 0
    assert doc["in_process"]["predict_many"]["classified"] == 4 and doc["in_process"]["predict_latency_ms"]["p99"] > 0
    text = (tmp_path / "load.md").read_text()
    assert text.startswith("# emotion-serve load test") and "Command: `emotion-bench serve-load " in text
    assert "| kserve | 2 | 4 / 4 |" in text and "Hardware and software" in text
    assert doc["started"] in text and "on the same machine" in text


def test_server_stderr_is_never_left_to_fill(tiny_export, tmp_path):
    """Thousands of bad connections, each logged by the server: it still answers (a pipe read only up to its
    banner fills at 64 KB and blocks it); a server that does not start says why in one line."""
    server = ServerProcess(str(tiny_export), [])
    try:
        host, port = server.url.split("//")[1].split(":")
        for _ in range(2000):  # about 40 bytes of stderr each
            with socket.create_connection((host, int(port)), timeout=5) as connection:
                connection.sendall(b"\x16\x03\x01 not http\r\n\r\n")
                connection.recv(100)
        assert Path(server.log.name).stat().st_size > 65536
        assert wait_ready(server.url, "emotion", seconds=10)["name"] == "emotion"
        with pytest.raises(UsageError, match=r"not ready after 1 s \(last answer: HTTP 404 for .*/v2/models/nope\)"):
            wait_ready(server.url, "nope", seconds=1)
    finally:
        assert server.stop() == 0
    with pytest.raises(UsageError, match="the server did not start: .*model .*nope.* does not exist"):
        ServerProcess(str(tmp_path / "nope"), [])


def test_ray_speed_takes_exit_1_of_emotion_infer_and_refuses_the_rest(tiny_export, synth_data, tmp_path):
    """Exit 1 (a file failed) still gives complete results; exit 2 (bad input) is one line."""
    good = next((synth_data / "Positive").glob("*.jpg"))
    shutil.copy(good, tmp_path / "good.jpg")
    _truncated_jpeg(tmp_path / "bad.jpg", good)
    done = infer(tmp_path, str(tiny_export), ray=False)
    assert [r["error"] is None for r in done["results"]] == [False, True] and done["images_per_second"] > 0
    with pytest.raises(UsageError, match=r"exited 2: emotion-infer: error: model .*nope does not exist$"):
        infer(tmp_path, str(tmp_path / "nope"), ray=False)


def test_serve_load_counts_refused_requests_as_errors(bench_export, synth_data, capsys):
    """Every request over the server's upload limit: each one is counted as an error, none as a success."""
    code = cli.main(["serve-load", "--model", str(bench_export), "--images", str(synth_data), "--files", "2",
                     "--clients", "2", "--count", "3", "--baseline-images", "2", "--protocol", "both", "--json", "-q",
                     "--server-args", "--max-upload-mb 0.001"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and [level["errors"] for level in doc["levels"]] == [{"HTTP 413": 6}] * 2
    assert all(level["ok"] == 0 and level["requests_per_second"] == 0 for level in doc["levels"])


def test_model_api_smoke(bench_export, synth_data, tmp_path, capsys):
    pytest.importorskip("model_api")
    code = cli.main(["model-api", str(bench_export), str(synth_data), "--json", "-q", "--out", str(tmp_path / "m.md")])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    (folder,) = doc["folders"]
    assert folder["photos"] == 80 and 0 <= folder["max_abs_dp"] < 1 and 0 <= folder["label_agreement"] <= 100
    assert "Command: `emotion-bench model-api " in (tmp_path / "m.md").read_text()


def test_model_api_on_photos_opencv_cannot_read_is_a_one_line_error(bench_export, tmp_path, capsys):
    pytest.importorskip("model_api")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "odd.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)  # a JPEG header only
    assert cli.main(["model-api", str(bench_export), str(tmp_path / "photos"), "-q"]) == 2
    error = capsys.readouterr().err
    assert error == f"emotion-bench: error: {tmp_path / 'photos'}: OpenCV reads none of its 1 photos (first: odd.jpg)\n"


def test_model_api_without_the_package_is_a_one_line_error(bench_export, synth_data, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "model_api.models", None)  # what an install without the dev extra gives
    assert cli.main(["model-api", str(bench_export), str(synth_data), "-q"]) == 2
    error = capsys.readouterr().err
    assert error == "emotion-bench: error: model_api is not installed: pip install 'emotion-edge[dev]'\n"


def test_subcommand_bad_input_exits_2(tmp_path, capsys):
    code = cli.main(["infer-speed", str(tmp_path / "nope"), "--data", str(tmp_path), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("emotion-bench: error: export ")
    assert cli.main(["serve-load", "--clients", "0", "--url", "http://127.0.0.1:9", "-q"]) == 2
    capsys.readouterr()
    assert cli.main(["serve-load", "--images", str(tmp_path), "--url", "http://127.0.0.1:9", "-q"]) == 2
    assert f"--images {tmp_path}: no .jpg or .jpeg files there" in capsys.readouterr().err
    assert cli.main(["ray-speed", "--data", str(tmp_path), "--models", str(tmp_path / "nope"), "-q"]) == 2
    assert capsys.readouterr().err == f"emotion-bench: error: model {tmp_path / 'nope'} does not exist\n"


def test_demo_replaces_only_its_own_folder(tmp_path, capsys):
    """emotion-demo replaces --out: never a folder of the user's."""
    from emotion.benchmarks.demo import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(mine)])
    assert exited.value.code == 2 and "not an earlier emotion-demo folder" in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "mine"
