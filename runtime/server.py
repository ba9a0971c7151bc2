"""The HTTP application of ``emotion-serve`` (FastAPI): the seed's ``/predict`` and the KServe v2 REST API.

Every error is ``{"error": "one line"}``. A body is read whole first, within ``--max-upload-mb`` (413) and
``--read-timeout`` (408), so a slow client holds a connection, never capacity. Work is then admitted by what it
costs, the pixels to decode (from the images' headers): over ``--max-request-megapixels`` 413, and past
``--max-megapixels`` held by the server 503 with ``Retry-After``. The classifier's worker threads decode and
infer, so the event loop never waits; a request not answered within ``--timeout`` gets 504.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from importlib.metadata import version
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import kserve
from .classifier import EmotionClassifier, Prediction
from .console import attempt, one_line
from .preprocess import ImageDecodeError, open_image
from .serve import build_parser

log = logging.getLogger("emotion.serve")


class Error(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Error, "description": text} for status, text in {
    400: "not an image, or a malformed request", 404: "unknown model or version",
    408: "the body did not arrive within --read-timeout",
    413: "body over --max-upload-mb, over --max-batch images or over --max-request-megapixels",
    503: "busy (Retry-After) or shutting down", 504: "no answer within --timeout",
    "default": "internal error",  # and FastAPI no longer lists a 422 (never sent: see create_app)
}.items()}


class Server:
    """What the routes share: the classifier, the options and the pixels of work admitted."""

    def __init__(self, classifier: EmotionClassifier, options: argparse.Namespace) -> None:
        self.classifier, self.options = classifier, options
        self.info = classifier.info.replace(name=options.model_name or classifier.info.name)
        self.pixels = 0  # admitted and not yet answered; touched on the event loop only
        self.ready = False

    async def classify(self, sources: list[Any]) -> list[Prediction]:
        """Predictions for encoded files or preprocessed arrays, in order; a bad file gets its ``error``."""
        options = self.options
        if len(sources) > options.max_batch:
            raise HTTPException(413, f"{len(sources)} images in one request; this server takes at most "
                                     f"{options.max_batch} (--max-batch)")
        # Headers only, here: decoding is the workers' job, and what it will cost decides admission.
        opened = [(source, None) if isinstance(source, np.ndarray) else
                  attempt(lambda s: open_image(s, self.classifier.spec), source) for source in sources]
        pixels = sum(_pixels(image) for image, error in opened if error is None)
        if pixels > (limit := min(options.max_request_megapixels, options.max_megapixels)) * 1e6:
            raise HTTPException(413, f"the images hold {pixels / 1e6:.1f} Mpx; this server takes at most {limit:g} Mpx "
                                     "in one request (--max-request-megapixels, --max-megapixels)")
        if not self.ready or self.pixels + pixels > options.max_megapixels * 1e6:
            raise self.unavailable()
        work = [self._start(image) if error is None else error for image, error in opened]
        try:
            return await asyncio.wait_for(asyncio.gather(*(self._answer(item) for item in work)), options.timeout)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within {options.timeout:g} s (--timeout); the request was "
                                     "cancelled") from None

    def _start(self, image: Any) -> asyncio.Future:
        """Hand ``image`` to the workers. Its pixels count as admitted until they are done with it, not until the
        request is answered: a worker cannot be stopped when a request times out."""
        size, loop = _pixels(image), asyncio.get_running_loop()
        self.pixels += size
        future = self.classifier.submit(image)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release, size))
        return asyncio.wrap_future(future)

    def _release(self, size: int) -> None:
        self.pixels -= size

    async def _answer(self, work: asyncio.Future | str) -> Prediction:
        """The prediction of started ``work``; a bad image's (or an unreadable header's) comes with its ``error``."""
        if isinstance(work, str):
            return Prediction(None, None, None, work)
        try:
            return await work
        except ImageDecodeError as exc:
            return Prediction(None, None, None, one_line(exc))
        except RuntimeError as exc:  # the model failed on a good image: the server's fault, not the client's
            if not self.ready:  # the model was closed under this request
                raise self.unavailable() from None
            raise HTTPException(500, one_line(exc)) from None

    def unavailable(self) -> HTTPException:
        return HTTPException(503, "server busy; retry shortly" if self.ready else "the server is shutting down",
                             headers={"Retry-After": "1"})


def _pixels(image: Any) -> int:
    """The pixels decoding ``image`` (an opened file or an array) will produce."""
    return image.shape[0] * image.shape[1] if isinstance(image, np.ndarray) else image.width * image.height


def _server(request: Request) -> Server:
    return request.app.state.server


def _model(name: str, model_version: str | None = None, server: Server = Depends(_server)) -> Server:
    """The server, when the route's ``name`` and ``model_version`` are its model's; else 404."""
    if name != server.info.name:
        raise HTTPException(404, f"unknown model {name!r}; this server serves {server.info.name!r}")
    if model_version not in (None, server.info.version):
        raise HTTPException(404, f"model {name!r} has no version {model_version!r} (only {server.info.version!r})")
    return server


predict_router = APIRouter(responses=ERRORS)
kserve_router = APIRouter(prefix="/v2", responses=ERRORS)


@predict_router.post("/predict")
async def predict(request: Request, data: list[UploadFile] | None = File(None, description="one or more image files"),
                  server: Server = Depends(_server)) -> Any:
    """Classify the image files uploaded in the multipart field ``data`` (or one image sent as the raw body)."""
    kind = request.headers.get("content-type", "")
    if data is not None:
        names, contents = [f.filename for f in data], [await f.read() for f in data]
    elif kind.startswith(("image/", "application/octet-stream")):
        names, contents = [None], [await request.body()]
    else:
        sent = (f" (multipart fields sent: {', '.join((await request.form()).keys()) or 'none'})"
                if "multipart/" in kind else "")
        raise HTTPException(400, "send the image as multipart/form-data in the field 'data' (curl -F data=@photo.jpg), "
                                 f"or as the raw body with Content-Type image/*{sent}")
    predictions, info = await server.classify(contents), server.info
    shared = {"threshold": info.threshold, "labels": list(info.labels),
              "model": {"name": info.name, "version": info.version}}
    results = [{"filename": name, **{k: v for k, v in p.to_dict().items() if k != "path"}}
               for name, p in zip(names, predictions)]
    if len(results) == 1:
        if results[0]["error"]:
            raise HTTPException(400, ": ".join(filter(None, (names[0], results[0]["error"]))))
        return {**{k: v for k, v in results[0].items() if k != "error"}, **shared}
    if all(r["error"] for r in results):
        return JSONResponse({"error": f"none of the {len(results)} files could be classified", "results": results,
                             **shared}, 400)
    return {"results": results, **shared}


@kserve_router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@kserve_router.get("/health/ready")
async def ready(server: Server = Depends(_server)) -> JSONResponse:
    return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)


@kserve_router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": "emotion-serve", "version": request.app.version,
            "extensions": ["binary_tensor_data", "classification"]}


@kserve_router.get("/models/{name}")
@kserve_router.get("/models/{name}/versions/{model_version}")
async def model_metadata(server: Server = Depends(_model)) -> dict[str, Any]:
    return kserve.model_metadata(server.info)


@kserve_router.get("/models/{name}/ready")
@kserve_router.get("/models/{name}/versions/{model_version}/ready")
async def model_ready(name: str, server: Server = Depends(_model)) -> JSONResponse:
    return JSONResponse({"name": name, "ready": server.ready}, status_code=200 if server.ready else 503)


@kserve_router.post("/models/{name}/infer")
@kserve_router.post("/models/{name}/versions/{model_version}/infer")
async def infer(request: Request, server: Server = Depends(_model)) -> Response:
    """KServe v2 inference: UINT8 [N, H, W, 3] tensors or BYTES [N] image files, JSON or binary."""
    body, header_length = await request.body(), request.headers.get(kserve.HEADER_LENGTH)
    try:
        parsed = await asyncio.to_thread(kserve.parse_request, body, header_length, server.info)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    predictions = await server.classify(parsed.images)
    for index, p in enumerate(predictions):
        if p.error:
            raise HTTPException(400, f"input 'image' element {index}: {p.error}")
    probabilities = np.array([p.probability for p in predictions], np.float32)
    content, header = kserve.encode_response(parsed, probabilities, server.info)
    if header is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={kserve.HEADER_LENGTH: str(header)})


def create_app(classifier: EmotionClassifier, options: argparse.Namespace | None = None) -> FastAPI:
    """The ASGI application serving ``classifier`` under ``emotion-serve``'s ``options`` (default: its defaults);
    it closes the classifier when it shuts down."""
    server = Server(classifier, options or build_parser().parse_args([]))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        server.ready = True
        yield
        server.ready = False
        await asyncio.to_thread(classifier.close)

    app = FastAPI(title="emotion-serve", version=version("emotion-edge"), lifespan=lifespan,
                  summary="Positive/negative image emotion classifier: /predict and the KServe v2 REST API")
    app.state.server = server
    app.include_router(predict_router)
    app.include_router(kserve_router)
    app.add_middleware(BodyLimits, max_mb=server.options.max_upload_mb, seconds=server.options.read_timeout)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}",
                   }.get(exc.status_code) if exc.detail in ("Not Found", "Method Not Allowed") else exc.detail
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)  # 400, not FastAPI's 422
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in problem.get("loc", ()))
        return JSONResponse({"error": f"invalid request: {where}: {problem.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, 500)

    return app


class BodyLimits:
    """ASGI middleware: a body over ``max_mb`` MiB is answered 413 (from its Content-Length when it declares one),
    and one that does not arrive within ``seconds`` 408, before any work is done for it."""

    def __init__(self, app: Any, max_mb: float, seconds: float) -> None:
        self.app, self.max_bytes, self.seconds = app, int(max_mb * 2**20), seconds
        self.too_large = f"request body too large; the limit is {max_mb:g} MiB (--max-upload-mb)"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline, received, complete = loop.time() + self.seconds, 0, False
        declared = int(dict(scope["headers"]).get(b"content-length", 0))  # a number: the HTTP server checked it

        async def limited_receive() -> dict:
            nonlocal received, complete
            if complete:
                return await receive()
            if declared > self.max_bytes:  # refused unread
                raise HTTPException(413, self.too_large)
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.seconds:g} s "
                                         "(--read-timeout)") from None
            received += len(message.get("body", b""))
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if received > self.max_bytes:  # a body longer than declared, or chunked
                raise HTTPException(413, self.too_large)
            return message

        await self.app(scope, limited_receive, send)
