"""Serve an ASGI app with uvicorn on a free loopback port in a background thread (tests only)."""

from __future__ import annotations

import threading
import time
from typing import Any


class BackgroundServer:
    """``with BackgroundServer(create_app(clf)) as server: httpx.get(server.url + "/v2/health/ready")``."""

    def __init__(self, app: Any, **config: Any) -> None:
        import uvicorn

        from emotion.runtime.serve import listen

        self.sock = listen("127.0.0.1", 0)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
