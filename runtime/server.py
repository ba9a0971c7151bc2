"""``emotion-serve``: the HTTP inference server (FastAPI on uvicorn), on the runtime package only.

Routes (every error is ``{"error": "one line"}``, the KServe format):

* ``POST /predict``: the seed's contract, a ``multipart/form-data`` upload with the image in the field
  ``data`` (repeat the field for several images; the raw image as the body, ``Content-Type: image/*``, works
  too). One file -> ``{"filename", "label", "probability", "threshold", "labels", "model"}``; several ->
  ``{"results": [{"filename", "label", "probability", "error"}, ...], "threshold", "labels", "model"}`` in
  upload order, a file that cannot be classified getting its ``error`` (status 200 when at least one file
  was classified, 400 when none was).
* KServe v2 REST, as OpenVINO Model Server and Triton answer it: ``GET /v2/health/live``,
  ``GET /v2/health/ready``, ``GET /v2``, ``GET /v2/models/{name}[/versions/{v}]``,
  ``GET /v2/models/{name}[/versions/{v}]/ready``, ``POST /v2/models/{name}[/versions/{v}]/infer`` (see
  :mod:`emotion.runtime.serving_kserve` for the tensors).

How it runs: one process, one model. Each request's body is read with a size limit (413), decoding and
resizing run in a thread pool (``--workers``), inference in OpenVINO's asynchronous requests
(``EmotionClassifier.submit`` awaited through ``asyncio.wrap_future``), so the event loop never blocks on
either. At most ``--max-pending`` requests are in progress and ``--max-body-memory-mb`` of their bodies held;
past either, a request is answered 503 at once (``Retry-After: 1``), never queued without bound; decoded
images wait for inference a few at a time (a semaphore), however many files the requests carry. A request
not answered within ``--timeout`` seconds gets 504 and its queued work is cancelled. The model is served
under its metadata name (``emotion``; ``--model-name`` to change it) and version. The server listens on 127.0.0.1 unless told otherwise; SIGINT/SIGTERM stop it gracefully
(requests in progress finish, then the model is closed).

FastAPI and uvicorn (the ``serve`` extra) are imported here only, never by ``import emotion.runtime``.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import numpy as np

from .backends import InferenceError, ModelLoadError
from .console import EXIT_OK, EXIT_USAGE, positive_float, positive_int
from .locate import MODEL_ENV, VARIANTS, default_model
from .preprocess import ImageDecodeError
from .serving_kserve import (
    HEADER_LENGTH,
    InferRequest,
    RequestError,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
    server_metadata,
    shortest_float,
)

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

PROG = "emotion-serve"
UPLOAD_FIELD = "data"
log = logging.getLogger("emotion.serve")


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits. ``workers``: decode/resize threads (None: the CPU count).

    Memory is bounded three ways: ``max_pending`` requests in progress; ``max_body_memory`` bytes of request
    bodies held at once (a request that would pass it gets 503, like one past ``max_pending``); and the images
    decoded but not yet classified, a few per decode thread and inference request (a semaphore), however many
    files the pending requests carry.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    timeout: float = 30.0
    max_pending: int = 128
    max_batch: int = 64
    workers: int | None = None
    max_body_memory: int = 256 * 1024 * 1024  # request bodies held at once, all requests together
    model_name: str | None = None  # the name served under /v2/models/ (None: the model's metadata name)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("emotion-edge")
    except Exception:  # not installed as a distribution (a bare source tree)
        return "0+unknown"


class _State:
    """What the routes share: the classifier, the decode pool, the admission counter."""

    def __init__(self, classifier: Any, settings: ServeSettings) -> None:
        self.classifier = classifier
        self.info = classifier.info if not settings.model_name else classifier.info.replace(name=settings.model_name)
        self.settings = settings
        workers = settings.workers or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emotion-serve-decode")
        self.pending = 0  # requests admitted and not yet answered (touched on the event loop only)
        self.body_bytes = 0  # bytes of request bodies held by admitted requests
        # Decoded images waiting for (or in) inference: enough to keep the decode threads and every
        # inference request busy, never one per uploaded file.
        requests = getattr(getattr(classifier, "backend", None), "parallelism", 2)
        self.images_in_flight = max(8, 2 * (workers + requests))
        self.image_slots: asyncio.Semaphore | None = None  # made on the server's event loop
        self.ready = False
        self.version = _package_version()
        self.started = time.time()
        self.counts = {"requests": 0, "images": 0, "rejected_busy": 0, "timeouts": 0, "errors": 0}


# -- request pieces --------------------------------------------------------------------------------------------
class _Ticket:
    """One admitted request's share of the body-memory budget, given back when it is answered."""

    def __init__(self, state: "_State") -> None:
        self.state = state
        self.bytes = 0

    def reserve(self, size: int) -> None:
        if size <= self.bytes:
            return
        extra = size - self.bytes
        budget = self.state.settings.max_body_memory
        if self.state.body_bytes + extra > budget:
            self.state.counts["rejected_busy"] += 1
            raise RequestError(
                503,
                f"server busy: request bodies in progress would exceed {budget / 2**20:g} MiB; retry shortly",
                {"Retry-After": "1"},
            )
        self.state.body_bytes += extra
        self.bytes = size

    def release(self) -> None:
        self.state.body_bytes -= self.bytes
        self.bytes = 0


async def _read_body(request: Any, ticket: _Ticket) -> bytearray:
    """The whole body, refused with 413 from its Content-Length or as soon as the stream passes the limit,
    and with 503 when the bodies held by all requests would pass the memory budget."""
    from starlette.requests import ClientDisconnect

    limit = ticket.state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, _too_large(int(declared), limit))
        ticket.reserve(int(declared))
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(413, _too_large(None, limit))
            ticket.reserve(len(body))
    except ClientDisconnect:
        raise RequestError(400, "the client went away before sending the whole body") from None
    return body


def _too_large(size: int | None, limit: int) -> str:
    got = f"{size:,} bytes" if size is not None else f"more than {limit:,} bytes"
    return f"request body too large: {got}; the limit is {limit / 2**20:g} MiB (--max-upload-mb)"


async def _form_files(headers: Any, body: bytearray, max_files: int) -> list[tuple[str | None, Any]]:
    """The ``data`` parts of a multipart body: (filename, bytes or an error message)."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield bytes(body)
        yield b""

    parser = MultiPartParser(headers, stream(), max_files=max_files, max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        message = str(getattr(exc, "message", exc))
        if message.startswith("Too many files"):
            raise RequestError(413, f"too many files in one request; this server takes at most {max_files} (--max-batch)") from None
        raise RequestError(400, f"malformed multipart body: {message}") from None
    try:
        items = form.getlist(UPLOAD_FIELD)
        if not items:
            fields = ", ".join(sorted({key for key, _ in form.multi_items()})) or "none"
            raise RequestError(
                400, f"no file in the field {UPLOAD_FIELD!r} (fields sent: {fields}); upload the image as {UPLOAD_FIELD}=@photo.jpg"
            )
        files: list[tuple[str | None, Any]] = []
        for item in items:
            if isinstance(item, UploadFile):
                files.append((item.filename, await item.read()))
            else:
                files.append((None, f"the field {UPLOAD_FIELD!r} holds text, not a file upload"))
        return files
    finally:
        await form.close()


def _error_reason(exc: BaseException) -> str:
    if isinstance(exc, ImageDecodeError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


_PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {
                        UPLOAD_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"},
                                       "description": "one or more image files (repeat the field)"}
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# -- the application ---------------------------------------------------------------------------------------------
def create_app(classifier: Any, settings: ServeSettings = ServeSettings(), *, close_classifier: bool = True) -> "FastAPI":
    """The ASGI application serving ``classifier`` (an :class:`~emotion.runtime.classifier.EmotionClassifier`).

    ``close_classifier``: close it when the application shuts down (the lifespan's end).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    state = _State(classifier, settings)
    info = state.info

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            state.pool.shutdown(wait=False, cancel_futures=True)
            if close_classifier:
                await asyncio.get_running_loop().run_in_executor(None, classifier.close)

    app = FastAPI(
        title="emotion-serve",
        version=state.version,
        summary="Positive/negative image emotion classifier: /predict and the KServe v2 REST API",
        lifespan=lifespan,
    )
    app.state.emotion = state

    def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error(400, f"invalid request: {exc.errors()[0].get('msg', 'invalid')}" if exc.errors() else "invalid request")

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> Response:
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    # -- shared machinery ----------------------------------------------------------------------------------
    async def admitted(work: Callable[[_Ticket], Awaitable[Response]]) -> Response:
        """Run ``work`` if there is room (else 503), within the per-request timeout (else 504)."""
        if state.pending >= settings.max_pending:
            state.counts["rejected_busy"] += 1
            return error(
                503,
                f"server busy: {state.pending} requests in progress (limit {settings.max_pending}); retry shortly",
                headers={"Retry-After": "1"},
            )
        if not state.ready:
            return error(503, "the server is shutting down")
        state.pending += 1
        state.counts["requests"] += 1
        ticket = _Ticket(state)
        try:
            return await asyncio.wait_for(work(ticket), timeout=settings.timeout)
        except asyncio.TimeoutError:
            state.counts["timeouts"] += 1
            return error(504, f"no answer within {settings.timeout:g} s (--timeout); the request was cancelled")
        except RequestError as exc:
            state.counts["errors"] += 1
            return error(exc.status, exc.message, exc.headers)
        finally:
            ticket.release()
            state.pending -= 1

    async def decode(data: bytes) -> np.ndarray:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(state.pool, classifier.preprocess, data)
        except RuntimeError as exc:  # the pool was shut down: the server is stopping
            raise RequestError(503, f"the server is shutting down ({exc})") from None

    async def infer(array: np.ndarray) -> float:
        try:
            future = classifier.submit(array)
        except RuntimeError as exc:  # closed
            raise RequestError(503, f"the model is not available: {exc}") from None
        return await asyncio.wrap_future(future)

    async def classify(data: Any) -> tuple[float | None, str | None]:
        """One encoded file -> (P(Positive), None) or (None, reason)."""
        if isinstance(data, str):  # already an error message
            return None, data
        async with image_slot():
            try:
                return await infer(await decode(data)), None
            except RequestError:  # the server is stopping: the whole request fails
                raise
            except (ImageDecodeError, InferenceError) as exc:
                return None, _error_reason(exc)
            except Exception as exc:  # noqa: BLE001 - one file's surprise must not fail the others
                log.exception("unexpected error on one uploaded file")
                return None, f"{type(exc).__name__}: {_error_reason(exc)}"

    async def decode_and_infer(data: bytes) -> float:
        async with image_slot():
            return await infer(await decode(data))

    def image_slot() -> asyncio.Semaphore:
        if state.image_slots is None:
            state.image_slots = asyncio.Semaphore(state.images_in_flight)
        return state.image_slots

    def check_model(name: str, version: str | None = None) -> None:
        if name != info.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {info.name!r}")
        if version is not None and version != info.version:
            raise RequestError(
                404, f"model {name!r} has no version {version!r}; the version served is {info.version!r}"
            )

    model_summary = {"name": info.name, "version": info.version}

    # -- our routes -------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def root() -> dict[str, Any]:
        return {
            "service": "emotion-serve",
            "version": state.version,
            "model": {
                **model_summary,
                "labels": list(info.labels),
                "threshold": info.threshold,
                "input_size": [info.input_height, info.input_width],
            },
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "timeout_seconds": settings.timeout,
                "max_pending": settings.max_pending,
                "max_batch": settings.max_batch,
            },
            "pending": state.pending,
            "counts": dict(state.counts),
            "uptime_seconds": round(time.time() - state.started, 1),
            "routes": ["POST /predict", f"POST /v2/models/{info.name}/infer", f"GET /v2/models/{info.name}", "GET /v2/health/ready"],
        }

    @app.post("/predict", openapi_extra=_PREDICT_OPENAPI)
    async def predict(request: Request) -> Response:
        """Classify the image(s) uploaded in the multipart field ``data`` (or sent as the raw body)."""

        async def work(ticket: _Ticket) -> Response:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            body = await _read_body(request, ticket)
            if kind == "multipart/form-data":
                files = await _form_files(request.headers, body, settings.max_batch)
            elif kind.startswith("image/") or kind == "application/octet-stream":
                files = [(None, bytes(body))]
            else:
                raise RequestError(
                    400,
                    f"send the image as multipart/form-data in the field {UPLOAD_FIELD!r} "
                    f"(curl -F {UPLOAD_FIELD}=@photo.jpg), or as the raw body with Content-Type image/*; "
                    f"got Content-Type {kind or 'none'!r}",
                )
            del body
            state.counts["images"] += len(files)
            outcomes = await asyncio.gather(*(classify(data) for _, data in files))
            shared = {"threshold": info.threshold, "labels": list(info.labels), "model": model_summary}
            if len(files) == 1:
                (name, _), (probability, reason) = files[0], outcomes[0]
                if reason is not None:
                    raise RequestError(400, f"{name}: {reason}" if name else reason)
                return JSONResponse(
                    {"filename": name, "label": info.label_for(probability),
                     "probability": shortest_float(probability), **shared}
                )
            results = [
                {
                    "filename": name,
                    "label": info.label_for(p) if p is not None else None,
                    "probability": shortest_float(p) if p is not None else None,
                    "error": reason,
                }
                for (name, _), (p, reason) in zip(files, outcomes)
            ]
            classified = sum(r["error"] is None for r in results)
            if classified == 0:
                return error(400, f"none of the {len(results)} files could be classified", results=results, **shared)
            return JSONResponse({"results": results, **shared})

        return await admitted(work)

    # -- KServe v2 ------------------------------------------------------------------------------------------
    @app.get("/v2/health/live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if not state.ready:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/v2")
    async def metadata() -> dict[str, Any]:
        return server_metadata(state.version)

    @app.get("/v2/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        check_model(name)
        return model_metadata(info)

    @app.get("/v2/models/{name}/versions/{version}")
    async def model_version(name: str, version: str) -> dict[str, Any]:
        check_model(name, version)
        return model_metadata(info)

    async def model_ready_answer(name: str, version: str | None) -> Response:
        check_model(name, version)
        body = {"name": info.name, "ready": state.ready}
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        return await model_ready_answer(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: str) -> Response:
        return await model_ready_answer(name, version)

    async def infer_answer(request: Request, name: str, version: str | None) -> Response:
        check_model(name, version)

        async def work(ticket: _Ticket) -> Response:
            body = await _read_body(request, ticket)
            loop = asyncio.get_running_loop()
            # JSON parsing of a large tensor takes tens of milliseconds: off the event loop too.
            parsed: InferRequest = await loop.run_in_executor(
                state.pool,
                lambda: parse_infer_request(body, request.headers.get(HEADER_LENGTH), info, max_batch=settings.max_batch),
            )
            state.counts["images"] += parsed.count
            if parsed.datatype == "UINT8":
                assert parsed.pixels is not None  # views over the body: no decoded copies to bound
                jobs = [infer(parsed.pixels[i]) for i in range(parsed.count)]
            else:
                jobs = [decode_and_infer(data) for data in parsed.files]
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
            for index, item in enumerate(outcomes):  # the first failure in input order
                if isinstance(item, ImageDecodeError):
                    raise RequestError(400, f"input 'image' element {index}: {item}")
                if isinstance(item, InferenceError):
                    raise RequestError(500, _error_reason(item))
                if isinstance(item, BaseException):
                    raise item
            probabilities = outcomes
            content, header_length = encode_infer_response(parsed, np.asarray(probabilities, np.float32), info)
            if header_length is None:
                return Response(content, media_type="application/json")
            return Response(
                content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
            )

        return await admitted(work)

    @app.post("/v2/models/{name}/infer")
    async def model_infer(request: Request, name: str) -> Response:
        return await infer_answer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def model_version_infer(request: Request, name: str, version: str) -> Response:
        return await infer_answer(request, name, version)

    return app


# -- running it ---------------------------------------------------------------------------------------------------
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port). ``OSError`` if it cannot be had."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class BackgroundServer:
    """Serve an ASGI app with uvicorn in a background thread (tests, benchmarks, embedding).

    >>> with BackgroundServer(create_app(clf)) as server:      # doctest: +SKIP
    ...     httpx.get(server.url + "/v2/health/ready")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.url = url_of(self.sock)
        config.setdefault("log_level", "warning")
        config.setdefault("access_log", False)
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", **config))
        self.thread = threading.Thread(target=self._run, name="emotion-serve-uvicorn", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.error!r}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


# -- the command ------------------------------------------------------------------------------------------------
def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve an exported emotion-edge model over HTTP: POST /predict and the KServe v2 REST API.",
        epilog="Exit status: 0 stopped normally (Ctrl-C, SIGTERM), 2 usage, model or address error.",
    )
    parser.add_argument(
        "-m", "--model",
        help=f"model: .xml, .onnx, a version/repository/export folder (default: ${MODEL_ENV}, "
        "else the most recent export under ./exports/)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=_port, default=8000, help="TCP port (default: 8000; 0: any free port)")
    parser.add_argument(
        "--workers", type=positive_int, default=None, metavar="N",
        help="threads decoding and resizing uploaded images (default: the CPU count); one process serves, "
        "OpenVINO's streams already use every core",
    )
    parser.add_argument(
        "--max-upload-mb", type=positive_float, default=20.0, metavar="MB",
        help="largest request body accepted, in MiB (default: 20); larger ones get 413",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=30.0, metavar="S",
        help="seconds a request may take before it is answered 504 (default: 30)",
    )
    parser.add_argument(
        "--max-pending", type=positive_int, default=128, metavar="N",
        help="requests in progress at once; more are answered 503 at once (default: 128)",
    )
    parser.add_argument(
        "--max-body-memory-mb", type=positive_float, default=256.0, metavar="MB",
        help="request bodies held at once, all requests together, in MiB; a request that would pass it is "
        "answered 503 (default: 256; at least --max-upload-mb)",
    )
    parser.add_argument(
        "--max-batch", type=positive_int, default=64, metavar="N",
        help="images in one request (files in /predict, N in a KServe tensor); more get 413 (default: 64)",
    )
    parser.add_argument(
        "--precision", choices=("f32", "bf16", "f16"), default=None,
        help="inference precision; default f32 (exact parity with training); bf16 is faster on CPUs with AMX",
    )
    parser.add_argument(
        "--model-name", metavar="NAME",
        help="name served under /v2/models/NAME (default: the model's own, from its metadata: usually emotion); "
        "e.g. emotion-int8 to match an OpenVINO Model Server configuration",
    )
    parser.add_argument("--device", default="CPU", help="OpenVINO device: CPU (default), GPU, AUTO, ...")
    parser.add_argument(
        "--mode", choices=("latency", "throughput"), default="throughput",
        help="OpenVINO performance hint (default: throughput, for concurrent requests)",
    )
    parser.add_argument(
        "--requests", type=positive_int, default=0, metavar="N",
        help="inferences kept in flight (default: OpenVINO's optimal number for the mode)",
    )
    parser.add_argument(
        "--variant", choices=VARIANTS, default=None,
        help="which model of an export folder: fp32 (default), fp16 or int8",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir", metavar="DIR",
        help="OpenVINO compiled-model cache (default: $EMOTION_CACHE_DIR or ~/.cache/emotion-edge/openvino)",
    )
    cache.add_argument("--no-cache", action="store_true", help="do not use the compiled-model cache")
    parser.add_argument(
        "--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info",
        help="server log level (default: info)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    return parser


def _import_multipart() -> None:
    """python-multipart (for /predict uploads): ``python_multipart`` since 0.0.13, ``multipart`` before."""
    try:
        import python_multipart  # noqa: F401
    except ImportError:
        import multipart  # noqa: F401


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn

        _import_multipart()
    except ImportError as exc:
        return _fail(f"{exc.name or 'a dependency'} is missing: install the serve extra (pip install 'emotion-edge[serve]')")

    from .classifier import EmotionClassifier

    try:
        classifier = EmotionClassifier.load(
            args.model or default_model(),
            device=args.device,
            precision=args.precision,
            mode=args.mode,
            cache_dir=None if args.no_cache else (args.cache_dir or True),
            variant=args.variant,
            num_requests=args.requests,
        )
    except (ModelLoadError, ValueError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    try:
        try:
            sock = bind_socket(args.host, args.port)
        except OSError as exc:
            return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        settings = ServeSettings(
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
            timeout=args.timeout,
            max_pending=args.max_pending,
            max_batch=args.max_batch,
            workers=args.workers,
            max_body_memory=int(max(args.max_body_memory_mb, args.max_upload_mb) * 1024 * 1024),
            model_name=args.model_name,
        )
        app = create_app(classifier, settings)
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level=args.log_level,
            access_log=not args.no_access_log,
            timeout_graceful_shutdown=int(args.timeout) + 5,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        described = classifier.describe()
        sys.stderr.write(
            f"{PROG}: model {described['name']} v{described['version']} ({described['model_precision']}) from "
            f"{os.fsdecode(classifier.path)}: {described['backend']} {described['device']} {described['precision']}, "
            f"{described['mode']}, {described['requests']} requests\n"
            f"{PROG}: listening on {url_of(sock)} (POST /predict, /v2/models/{args.model_name or described['name']}/infer)\n"
        )
        sys.stderr.flush()
        # SIGTERM (docker stop, systemd) ends the process like Ctrl-C does: uvicorn drains requests in
        # progress, the lifespan closes the model, and the exit status is 0.
        previous = signal.signal(signal.SIGTERM, _exit_quietly)
        try:
            server.run(sockets=[sock])
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            sock.close()
        return EXIT_OK if server.started else EXIT_USAGE
    finally:
        classifier.close()


def _exit_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
