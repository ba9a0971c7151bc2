"""``emotion-serve``: serve an exported model over HTTP (the application is :mod:`emotion.runtime.server`).

One process, one model, listening on 127.0.0.1 unless told otherwise. SIGINT and SIGTERM stop it gracefully:
requests in progress finish, then the model is closed. Exit status: 0 stopped, 2 usage, model or address error.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys

from .console import (EXIT_OK, UsageError, add_model_options, guard, load_classifier, model_line, positive_float,
                      positive_int)

PROG = "emotion-serve"


def build_parser() -> argparse.ArgumentParser:
    """The command's options, which are also the server's settings (:func:`emotion.runtime.server.create_app`)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve an exported emotion-edge model: POST /predict and the KServe v2 REST API.",
        epilog="Exit status: 0 stopped normally (Ctrl-C, SIGTERM), 2 usage, model or address error.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=port, default=8000, help="TCP port (default: 8000; 0: any free port)")
    parser.add_argument("--max-upload-mb", type=positive_float, default=20.0, metavar="MB",
                        help="largest request body, in MiB; larger ones get 413 (default: 20)")
    parser.add_argument("--read-timeout", type=positive_float, default=30.0, metavar="S",
                        help="seconds a client has to send its whole body; slower ones get 408 (default: 30)")
    parser.add_argument("--timeout", type=positive_float, default=30.0, metavar="S",
                        help="seconds to answer once the body is in; then 504 (default: 30)")
    parser.add_argument("--max-batch", type=positive_int, default=64, metavar="N",
                        help="images in one request (/predict files, a KServe tensor's N); more get 413 (default: 64)")
    parser.add_argument("--max-request-megapixels", type=positive_float, default=64.0, metavar="MP",
                        help="pixels one request may decode (from the images' headers); more get 413 (default: 64)")
    parser.add_argument("--max-megapixels", type=positive_float, default=256.0, metavar="MP",
                        help="pixels of work the server takes on at once; past it requests get 503 (default: 256)")
    parser.add_argument("--model-name", metavar="NAME",
                        help="name served under /v2/models/NAME (default: the model's own, usually emotion); e.g. "
                             "emotion-int8 to match an OpenVINO Model Server configuration")
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    add_model_options(parser, mode="throughput")
    return parser


def port(text: str) -> int:
    """argparse type: a TCP port number, 0 to 65535 (the C library would wrap larger ones silently)."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return number


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Made with ``IPPROTO_TCP`` because asyncio sets ``TCP_NODELAY`` only on such
    connections; without it, Nagle's algorithm and delayed ACKs hold back every keep-alive response."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


@guard(prog=PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn  # a missing serve extra is guard's one-line error

    from .server import create_app
    with load_classifier(args) as classifier:
        try:
            sock = listen(args.host, args.port)
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        host, port = sock.getsockname()[:2]
        host, model = f"[{host}]" if ":" in host else host, classifier.describe()
        print(f"{PROG}: {model_line(model)}\n{PROG}: listening on http://{host}:{port} (POST /predict, "
              f"/v2/models/{args.model_name or model['name']}/infer)", file=sys.stderr, flush=True)
        # uvicorn handles SIGINT and SIGTERM: it drains requests in progress, the lifespan closes the model, and
        # then it raises the signal again, which is how this command stops normally.
        with sock, contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(uvicorn.Config(create_app(classifier, args), log_level=args.log_level,
                                          access_log=not args.no_access_log, timeout_keep_alive=5,
                                          timeout_graceful_shutdown=int(args.timeout) + 5)).run(sockets=[sock])
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
