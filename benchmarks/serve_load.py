"""``emotion-bench serve-load``: throughput and latency of ``emotion-serve`` under 1, 8 and 64 concurrent clients.

Each client has its own keep-alive connection and sends ``--count`` JPEG requests one after the other
(``POST /predict`` multipart, or KServe BYTES in the binary extension); in-process ``predict_many`` throughput
and ``predict`` latency on the same files show the HTTP cost. The load generator runs on the same machine and
shares its cores with the server, which lowers the figures on a small machine; each level reports the CPU both took.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotion.runtime.console import UsageError, positive_float, positive_int

from .report import num, page, row_table
from .timing import cpu_seconds, latency_loop, percentiles_ms

LEVELS = (1, 8, 64)
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model for the server and the in-process baseline (default: emotion-serve's)")
    parser.add_argument("--variant", choices=("fp32", "fp16", "int8"), default=None, help="export variant")
    parser.add_argument("--model-name", help="the served model's name (default: the model's own, else emotion)")
    parser.add_argument("--url", help="use this running server instead of starting one (no in-process baseline unless --model)")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: synthetic 500x400 JPEGs)")
    parser.add_argument("--files", type=positive_int, default=64, help="distinct files to cycle through (default: 64)")
    parser.add_argument("--clients", default=",".join(map(str, LEVELS)), help="concurrency levels (default: 1,8,64)")
    parser.add_argument("--count", type=positive_int, default=16, help="requests per client at each level (default: 16)")
    parser.add_argument("--protocol", choices=("predict", "kserve", "both"), default="predict",
                        help="POST /predict (multipart) or KServe BYTES (binary extension) (default: predict)")
    parser.add_argument("--max-seconds", type=positive_float, default=120.0, help="time limit per level (default: 120)")
    parser.add_argument("--baseline-images", type=positive_int, default=256,
                        help="images for the in-process baseline (default: 256)")
    parser.add_argument("--server-args", type=shlex.split, default="",
                        help="extra emotion-serve arguments, e.g. '--max-megapixels 512'")


def load_images(folder: Path | None, limit: int, size=(500, 400)) -> tuple[list[tuple[str, bytes]], str]:
    """Up to ``limit`` JPEG files of ``folder`` as (name, bytes), and where they came from; without a folder,
    synthetic 500x400 ones.

    Raises:
        UsageError: ``folder`` holds no JPEG file.
    """
    if folder is not None:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
        if not paths:
            raise UsageError(f"--images {folder}: no .jpg or .jpeg files there")
        chosen = paths[:: max(1, len(paths) // limit)][:limit]  # spread over the folder (both classes)
        return [(p.name, p.read_bytes()) for p in chosen], f"{len(chosen)} JPEGs from {folder}"
    from PIL import Image

    rng, files = np.random.default_rng(7), []
    for index in range(limit):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[..., index % 3] //= 2
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
        files.append((f"synthetic-{index}.jpg", buffer.getvalue()))
    return files, f"{limit} synthetic {size[0]}x{size[1]} JPEGs"


def in_process(model: str, files: list[tuple[str, bytes]], total: int, variant: str | None) -> dict[str, Any]:
    """``predict_many`` images/s (throughput mode) and ``predict`` latency (latency mode) on the same files."""
    from emotion.runtime import EmotionClassifier

    data = [content for _, content in files]
    items = [data[i % len(data)] for i in range(total)]
    with EmotionClassifier.load(model, mode="throughput", variant=variant) as clf:
        list(clf.predict_many(data[:8]))  # warm-up
        start = time.perf_counter()
        done = sum(1 for p in clf.predict_many(items) if p.ok)
        elapsed = time.perf_counter() - start
        described = {k: v for k, v in clf.describe().items() if k != "cache_dir"}
    with EmotionClassifier.load(model, mode="latency", variant=variant) as clf:
        count = min(total, 200)
        latencies = latency_loop(lambda i: clf.predict(items[i % total]), 0, warmup=4, min_iterations=count,
                                 max_iterations=count)
    return {"predict_many": {"images": total, "classified": done, "seconds": elapsed,
                             "images_per_second": done / elapsed},
            "model": described, "predict_latency_ms": percentiles_ms(latencies)}


class ServerProcess:
    """``emotion-serve`` on a free loopback port, in a subprocess; stopped with SIGTERM. Its stderr goes to a
    temporary file (a pipe read only up to the banner would fill and block the server)."""

    def __init__(self, model: str, extra: list[str]) -> None:
        command = [sys.executable, "-m", "emotion.runtime.serve", "--model", model, "--port", "0",
                   "--no-access-log", "--log-level", "warning", *extra]
        self.log = tempfile.NamedTemporaryFile(prefix="emotion-serve-", suffix=".log")
        self.process = subprocess.Popen(command, stderr=self.log)
        self.url, self.banner = None, []
        deadline = time.monotonic() + 120
        while self.url is None and time.monotonic() < deadline:
            exited = self.process.poll() is not None
            self.banner = Path(self.log.name).read_text(errors="replace").splitlines()
            self.url = next((line.split("listening on ")[1].split()[0] for line in self.banner
                             if "listening on " in line), None)
            if exited:
                break
            time.sleep(0.1)
        if self.url is None:
            self.stop()
            raise UsageError("the server did not start: " + " ".join(self.banner[-2:]))

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def wait_ready(url: str, name: str, seconds: float = 60) -> dict[str, Any]:
    """The served model's KServe metadata, once the server answers ready.

    Raises:
        UsageError: no answer in ``seconds``, or an error status (the last one seen: 503 loading, 404 no such model).
    """
    deadline, last = time.monotonic() + seconds, "no answer"
    while True:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=5):
                pass
            with urllib.request.urlopen(f"{url}/v2/models/{name}", timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            last = f"last answer: HTTP {exc.code} for {exc.filename}"
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise UsageError(f"{url} is not ready after {seconds:g} s ({last})")
        time.sleep(0.1)


def _request(protocol: str, model_name: str, name: str, content: bytes) -> bytes:
    """One HTTP/1.1 keep-alive request, as bytes: a multipart upload to ``/predict``, or a KServe BYTES tensor in
    the binary extension."""
    if protocol == "predict":
        boundary = "emotion-serve-load"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="{name}"\r\n'
                "Content-Type: image/jpeg\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        path, kind, extra = "/predict", f"multipart/form-data; boundary={boundary}", ""
    else:
        header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                         "parameters": {"binary_data_size": len(content) + 4}}],
                             "outputs": [{"name": "probability", "parameters": {"binary_data": False}}]}).encode()
        body = header + len(content).to_bytes(4, "little") + content
        path, kind = f"/v2/models/{model_name}/infer", "application/octet-stream"
        extra = f"Inference-Header-Content-Length: {len(header)}\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: emotion-serve\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on a keep-alive connection and read its whole response (sized by its Content-Length, as
    emotion-serve and OpenVINO Model Server send it); its status code."""
    writer.write(request)
    status, length = int((await reader.readline()).split()[1]), 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def run_level(url: str, model_name: str, clients: int, count: int, files: list[tuple[str, bytes]],
                    protocol: str, max_seconds: float) -> dict[str, Any]:
    """``clients`` concurrent clients, ``count`` requests each, one after the other, each over its own keep-alive
    connection opened before the clock starts. Requests are built beforehand and responses read with asyncio
    streams, so the load costs little CPU beside the server's."""
    where = urllib.parse.urlsplit(url)
    requests = [_request(protocol, model_name, *item) for item in files]
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def connect() -> Connection:
        return await asyncio.open_connection(where.hostname, where.port or 80)

    async def client(index: int, connection: Connection | None, deadline: float) -> bool:
        for step in range(count):
            if time.perf_counter() > deadline:
                return True  # stopped by the time limit
            start = time.perf_counter()
            try:
                connection = connection or await connect()
                request = requests[(index * count + step) % len(requests)]
                status = await asyncio.wait_for(_exchange(*connection, request), 120)
                kind = None if status == 200 else f"HTTP {status}"
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                kind = type(exc).__name__  # counted; the next request opens a new connection
                if connection:
                    connection[1].close()
                connection = None
            if kind:
                errors[kind] = errors.get(kind, 0) + 1
            else:
                latencies.append(time.perf_counter() - start)
        if connection:
            connection[1].close()
        return False

    connections = await asyncio.gather(*(connect() for _ in range(clients)))
    start = time.perf_counter()
    stopped = await asyncio.gather(*(client(i, connection, start + max_seconds)
                                     for i, connection in enumerate(connections)))
    wall = time.perf_counter() - start
    return {"clients": clients, "protocol": protocol, "requests": len(latencies) + sum(errors.values()),
            "planned": clients * count, "ok": len(latencies), "errors": errors, "seconds": wall,
            "requests_per_second": len(latencies) / wall if wall > 0 else None,
            "latency_ms": percentiles_ms(latencies), "stopped_by_time_limit": any(stopped)}


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Start the server (unless ``--url``), measure the in-process baseline and every level; the document.

    Raises:
        UsageError: bad ``--clients``, or a server that does not start or answer.
    """
    try:
        levels = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise UsageError(f"--clients must be positive numbers separated by commas, got {args.clients!r}")
    if args.url and urllib.parse.urlsplit(args.url).scheme != "http":
        raise UsageError(f"--url must be http://HOST:PORT (the load generator speaks plain HTTP/1.1), got {args.url!r}")
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
    extra = [*args.server_args, *(["--variant", args.variant] if args.variant else []),
             *(["--model-name", args.model_name] if args.model_name else [])]
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
                server_cpu, client_cpu = server.cpu_seconds() if server else 0.0, cpu_seconds()
                level = asyncio.run(run_level(url, name, clients, args.count, files, protocol, args.max_seconds))
                per_request = 1000.0 / max(1, level["requests"])  # CPU seconds -> ms per request
                level["cpu_ms_per_request"] = {  # where a small machine's cores go: serving or generating the load
                    "server": (server.cpu_seconds() - server_cpu) * per_request if server else None,
                    "load_generator": (cpu_seconds() - client_cpu) * per_request}
                results.append(level)
    finally:
        status = server.stop() if server is not None else None
    model_info = (baseline or {}).get("model") or {"name": about["name"], "version": about["versions"][0],
                                                   "input_size": about["inputs"][0]["shape"][1:3]}
    return {"model": model or url, "model_info": model_info, "url": args.url,
            "server_banner": (server.banner[0].replace("emotion-serve: ", "") if server and server.banner else url),
            "server_exit_status": status, "images": source, "in_process": baseline, "levels": results,
            "client_library": "asyncio streams, HTTP/1.1 keep-alive"}


def markdown(report: dict[str, Any]) -> str:
    base, info = report["in_process"], report["model_info"]
    out = [f"- model: `{report['model']}` ({info.get('name')} v{info.get('version')}, input {info.get('input_size')}); "
           f"server: {report['server_banner']}", f"- images: {report['images']}; measured {report['started']}",
           f"- load generator: {report['client_library']}, "
           + ("on the same machine: it shares the CPUs with the server" if not report["url"] else
              f"against {report['url']}: the machine below is the load generator's, the server's is not recorded"),
           ""]
    if base:
        pm, lat = base["predict_many"], base["predict_latency_ms"]
        out += [f"In-process, same files: `predict_many` (throughput mode) **{num(pm['images_per_second'])} images/s** "
                f"({pm['classified']} images in {num(pm['seconds'], 3)} s); `predict` one at a time (latency mode) "
                f"p50 {num(lat['p50'], 2)} ms, p99 {num(lat['p99'], 2)} ms.", ""]
    rows = []
    for level in report["levels"]:
        lat, rate = level["latency_ms"], level["requests_per_second"]
        rows.append([level["protocol"], str(level["clients"]), f"{level['ok']} / {level['requests']}"
                     + (" (time limit)" if level["stopped_by_time_limit"] else ""),
                     ", ".join(f"{k}: {v}" for k, v in level["errors"].items()) or "0", num(rate),
                     *(num(lat[q], 2) for q in ("p50", "p90", "p99", "max")),
                     f"{rate / base['predict_many']['images_per_second']:.0%}" if base and rate else "",
                     *(num(level["cpu_ms_per_request"][side], 2) for side in ("server", "load_generator"))])
    out.append(row_table(["protocol", "clients", "requests ok / sent", "errors", "req/s", "p50 ms", "p90 ms",
                          "p99 ms", "max ms", "vs in-process", "server CPU ms/req", "load generator CPU ms/req"], rows))
    out += ["", "CPU ms/req: CPU seconds the server process and the load generator used during the level, per "
            "request sent. When the load generator's share grows with the clients, a drop in req/s is its own."]
    return page(f"emotion-serve load test ({report['started']})", report, out)


def summary(report: dict[str, Any]) -> str:
    return "\n".join(f"{level['protocol']}, {level['clients']} clients: {num(level['requests_per_second'])} req/s, "
                     f"p50 {num(level['latency_ms']['p50'], 2)} ms, p99 {num(level['latency_ms']['p99'], 2)} ms, "
                     f"errors {level['errors'] or 0}" for level in report["levels"])
