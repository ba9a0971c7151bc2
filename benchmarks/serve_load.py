"""``emotion-bench serve-load``: throughput and latency of ``emotion-serve`` under 1, 8 and 64 concurrent clients.

    emotion-bench serve-load --model exports/run1 --out results/serve_load.md
    emotion-bench serve-load --url http://127.0.0.1:8000 --out results/serve_load.md

It starts the server as a subprocess (``emotion-serve --port 0``, no access log) unless ``--url`` names one
that already runs, then for each concurrency level runs that many clients, each with its own keep-alive
connection, each sending ``--count`` requests one after the other: a 400x500 JPEG (from
``/work/shared/data/oasis-dev`` or ``--images``; synthetic ones when there are none) uploaded to
``POST /predict`` (multipart field ``data``) or, with ``--protocol kserve``, to ``POST /v2/models/NAME/infer``
as a BYTES tensor in the binary extension. Everything is bounded: ``--count`` requests per client and
``--max-seconds`` per level (clients stop early when it runs out, and the run says so).

In the same run and on the same files it measures ``emotion-infer``-style in-process throughput
(``EmotionClassifier.predict_many``, throughput mode) and the in-process single-image latency
(``EmotionClassifier.predict``), so the HTTP cost can be read off directly. Results go to ``OUT.json`` and
``OUT.md``. The load generator (httpx) shares the machine's cores with the server: on a small machine its own
CPU use lowers the figures, which the report notes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotion.runtime.console import positive_float, positive_int

from .hardware import hardware_report
from .suite import BenchError

DEFAULT_IMAGES = Path("/work/shared/data/oasis-dev")
LEVELS = (1, 8, 64)


# -- inputs --------------------------------------------------------------------------------------------------------
def load_images(folder: Path | None, limit: int, size=(500, 400)) -> tuple[list[tuple[str, bytes]], str]:
    """Up to ``limit`` JPEG files as (name, bytes), and where they came from; synthetic 500x400 ones if none."""
    if folder is not None and folder.is_dir():
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
        # Spread over the folder (both classes), not the first N of one.
        step = max(1, len(paths) // limit) if paths else 1
        chosen = paths[::step][:limit]
        if chosen:
            return [(p.name, p.read_bytes()) for p in chosen], f"{len(chosen)} JPEGs from {folder}"
    from PIL import Image

    rng = np.random.default_rng(7)
    files = []
    for index in range(limit):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[..., index % 3] //= 2
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
        files.append((f"synthetic-{index}.jpg", buffer.getvalue()))
    return files, f"{limit} synthetic {size[0]}x{size[1]} JPEGs"


# -- in-process baseline ----------------------------------------------------------------------------------------
def in_process(model: str, files: list[tuple[str, bytes]], total: int, variant: str | None) -> dict[str, Any]:
    from emotion.runtime.classifier import EmotionClassifier

    data = [content for _, content in files]
    items = [data[i % len(data)] for i in range(total)]
    result: dict[str, Any] = {}
    with EmotionClassifier.load(model, mode="throughput", variant=variant) as clf:
        for _ in clf.predict_many(data[:8]):  # warm-up
            pass
        start = time.perf_counter()
        done = sum(1 for p in clf.predict_many(items) if p.ok)
        elapsed = time.perf_counter() - start
        result["predict_many"] = {
            "images": total, "classified": done, "seconds": round(elapsed, 3),
            "images_per_second": round(done / elapsed, 1),
        }
        result["model"] = {k: v for k, v in clf.describe().items() if k not in ("cache_dir",)}
    with EmotionClassifier.load(model, mode="latency", variant=variant) as clf:
        for content in data[:4]:
            clf.predict(content)
        latencies = []
        for content in items[: min(total, 200)]:
            start = time.perf_counter()
            clf.predict(content)
            latencies.append(time.perf_counter() - start)
        result["predict_latency_ms"] = _percentiles(latencies)
    return result


# -- the server ---------------------------------------------------------------------------------------------------
class ServerProcess:
    """``emotion-serve`` on a free loopback port, in a subprocess; stopped with SIGTERM."""

    def __init__(self, model: str, extra: list[str]) -> None:
        command = [
            sys.executable, "-m", "emotion.runtime.serve", "--model", model, "--port", "0",
            "--no-access-log", "--log-level", "warning", *extra,
        ]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.url = None
        self.banner: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.banner.append(line.rstrip())
            if "listening on " in line:
                self.url = line.split("listening on ")[1].split()[0]
                break
        if self.url is None:
            self.stop()
            raise BenchError("the server did not start: " + " ".join(self.banner[-2:]))

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_ready(url: str, name: str, seconds: float = 60) -> dict[str, Any]:
    """The served model's KServe metadata, once the server answers ready."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                return httpx.get(f"{url}/v2/models/{name}", timeout=5).json()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{url} is not answering")
        time.sleep(0.1)


# -- the load -------------------------------------------------------------------------------------------------------
def _kserve_body(content: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(content) + 4}}],
            "outputs": [{"name": "probability", "parameters": {"binary_data": False}}],
        }
    ).encode()
    body = header + len(content).to_bytes(4, "little") + content
    return body, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


async def run_level(
    url: str,
    model_name: str,
    clients: int,
    count: int,
    files: list[tuple[str, bytes]],
    protocol: str,
    max_seconds: float,
) -> dict[str, Any]:
    """``clients`` concurrent clients, ``count`` requests each, one after the other, over keep-alive
    connections opened (and used once) before the clock starts."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stopped_early = False
    path = "/predict" if protocol == "predict" else f"/v2/models/{model_name}/infer"

    async with _Http(url, clients) as http:
        await asyncio.gather(*(http.get("/v2/health/live") for _ in range(clients)))  # open the connections
        deadline = time.perf_counter() + max_seconds

        async def client(index: int) -> None:
            nonlocal stopped_early
            for step in range(count):
                if time.perf_counter() > deadline:
                    stopped_early = True
                    return
                name, content = files[(index * count + step) % len(files)]
                start = time.perf_counter()
                try:
                    if protocol == "predict":
                        status = await http.post_file(path, name, content)
                    else:
                        body, headers = _kserve_body(content)
                        status = await http.post(path, body, headers)
                    ok, kind = status == 200, f"HTTP {status}"
                except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                    ok, kind = False, type(exc).__name__
                elapsed = time.perf_counter() - start
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[kind] = errors.get(kind, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - start
    sent = len(latencies) + sum(errors.values())
    return {
        "clients": clients,
        "protocol": protocol,
        "requests": sent,
        "planned": clients * count,
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(wall, 3),
        "requests_per_second": round(len(latencies) / wall, 1) if wall > 0 else None,
        "latency_ms": _percentiles(latencies),
        "stopped_by_time_limit": stopped_early,
    }


class _Http:
    """One httpx connection pool of ``size`` keep-alive connections."""

    def __init__(self, url: str, size: int) -> None:
        import httpx

        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.session = httpx.AsyncClient(base_url=url, limits=limits, timeout=120)

    async def __aenter__(self) -> "_Http":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.session.aclose()

    async def get(self, path: str) -> int:
        return (await self.session.get(path)).status_code

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        return (await self.session.post(path, content=body, headers=headers)).status_code

    async def post_file(self, path: str, name: str, content: bytes) -> int:
        return (await self.session.post(path, files={"data": (name, content, "image/jpeg")})).status_code


def _percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    values = np.array(seconds) * 1000
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p90": round(float(np.percentile(values, 90)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "max": round(float(values.max()), 2),
        "mean": round(float(values.mean()), 2),
    }


# -- report -----------------------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    base = report["in_process"]
    lines = [
        f"# emotion-serve load test ({report['date']})",
        "",
        f"- model: `{report['model']}` ({report['model_info'].get('name')} v{report['model_info'].get('version')}, "
        f"input {report['model_info'].get('input_size')}); server: {report['server_banner']}",
        f"- images: {report['images']}; machine: {report['machine']['cpus']} CPUs, {report['machine']['processor']}, "
        f"Python {report['machine']['python']}",
        f"- load generator: {report['client_library']}, on the same machine: it shares the CPUs with the server",
        "",
    ]
    if base:
        pm = base["predict_many"]
        lat = base["predict_latency_ms"]
        lines += [
            f"In-process, same files: `predict_many` (throughput mode) **{pm['images_per_second']} images/s** "
            f"({pm['classified']} images in {pm['seconds']} s); `predict` one at a time (latency mode) "
            f"p50 {lat['p50']} ms, p99 {lat['p99']} ms.",
            "",
        ]
    lines += [
        "| protocol | clients | requests ok / sent | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | vs in-process |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in report["levels"]:
        lat = level["latency_ms"]
        errors = ", ".join(f"{k}: {v}" for k, v in level["errors"].items()) or "0"
        ratio = ""
        if base and level["requests_per_second"]:
            ratio = f"{level['requests_per_second'] / base['predict_many']['images_per_second']:.0%}"
        note = " (time limit)" if level["stopped_by_time_limit"] else ""
        lines.append(
            f"| {level['protocol']} | {level['clients']} | {level['ok']} / {level['requests']}{note} | {errors} | "
            f"{level['requests_per_second']} | {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} | {ratio} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model for the server and the in-process baseline (default: emotion-serve's)")
    parser.add_argument("--variant", choices=("fp32", "fp16", "int8"), default=None, help="export variant")
    parser.add_argument("--model-name", help="the served model's name (default: the model's own, else emotion)")
    parser.add_argument("--url", help="use this running server instead of starting one (no in-process baseline unless --model)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help=f"folder of JPEGs (default: {DEFAULT_IMAGES})")
    parser.add_argument("--files", type=positive_int, default=64, help="distinct files to cycle through (default: 64)")
    parser.add_argument("--clients", default=",".join(map(str, LEVELS)), help="concurrency levels (default: 1,8,64)")
    parser.add_argument("--count", type=positive_int, default=16, help="requests per client at each level (default: 16)")
    parser.add_argument("--protocol", choices=("predict", "kserve", "both"), default="predict",
                        help="POST /predict (multipart) or KServe BYTES (binary extension) (default: predict)")
    parser.add_argument("--max-seconds", type=positive_float, default=120.0, help="time limit per level (default: 120)")
    parser.add_argument("--baseline-images", type=positive_int, default=256,
                        help="images for the in-process baseline (default: 256)")
    parser.add_argument("--server-args", default="", help="extra emotion-serve arguments, e.g. '--max-megapixels 512'")
    parser.add_argument("--out", metavar="FILE.md", help="write the Markdown report there (and FILE.json beside it)")


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the server (unless ``--url``), measure the in-process baseline and every level; the document.

    Raises:
        BenchError: bad ``--clients``, or a server that does not start or answer.
    """
    try:
        levels = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise BenchError(f"--clients must be positive numbers separated by commas, got {args.clients!r}")
    model = args.model
    if model is None and args.url is None:
        from emotion.runtime.locate import default_model

        model = str(default_model())
    files, source = load_images(args.images, args.files)
    progress(source)
    baseline = None
    if model is not None:
        progress("in-process baseline")
        baseline = in_process(model, files, args.baseline_images, args.variant)
    extra = args.server_args.split() + (["--variant", args.variant] if args.variant else [])
    server = ServerProcess(model, extra) if args.url is None else None
    url = args.url or server.url
    try:
        name = args.model_name or ((baseline or {}).get("model") or {}).get("name") or "emotion"
        about = wait_ready(url, name)
        results = []
        for protocol in ["predict", "kserve"] if args.protocol == "both" else [args.protocol]:
            asyncio.run(run_level(url, name, 2, 4, files, protocol, 30))  # warm-up
            for clients in levels:
                progress(f"{protocol}, {clients} clients x {args.count}")
                results.append(asyncio.run(run_level(url, name, clients, args.count, files, protocol,
                                                     args.max_seconds)))
    finally:
        status = server.stop() if server is not None else None
    model_info = (baseline or {}).get("model") or {"name": about["name"], "version": about["versions"][0],
                                                   "input_size": about["inputs"][0]["shape"][1:3]}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "model": model or url, "model_info": model_info,
        "server_banner": (server.banner[0].replace("emotion-serve: ", "") if server and server.banner else url),
        "server_exit_status": status, "images": source, "client_library": "httpx",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "in_process": baseline, "levels": results, "hardware": hardware_report(),
    }


def summary(report: dict[str, Any]) -> str:
    return "\n".join(f"{level['protocol']}, {level['clients']} clients: {level['requests_per_second']} req/s, p50 "
                     f"{level['latency_ms']['p50']} ms, p99 {level['latency_ms']['p99']} ms, errors "
                     f"{level['errors'] or 0}" for level in report["levels"])
