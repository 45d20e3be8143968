"""The dashboard's web server (aiohttp): the page, its script, and the updates it is sent.

Routes:

- ``GET /`` and ``/static/...``: the page, its script and the vendored uPlot (no data in them);
- ``GET /api/stream[?model=KEY]``: Server-Sent Events, one JSON update at most every
  ``PUSH_INTERVAL`` seconds per page, with only what changed (see ``Board.update``);
  the connection status at least every ``KEEPALIVE`` seconds;
- ``GET /api/models?order=active|worst|best&search=&offset=``: a keyed service's models;
- ``GET /api/check``: whether the token is right (the page asks for one if not).

With a token, the ``/api`` routes want ``?token=`` (or ``Authorization: Bearer``).
Each page costs one coroutine and the small ``Seen`` record: a slow page waits on its own
socket and then gets the newest state, never a backlog.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import threading
import time
from pathlib import Path

from aiohttp import web

from ..client import ServiceError
from .board import COLUMNS, Seen
from .bridge import ORDERS, Bridge

PUSH_INTERVAL = 0.25  # seconds between two updates to one page
KEEPALIVE = 5.0  # seconds after which a page gets the status even if nothing changed
START_TIMEOUT = 10.0  # seconds to wait for the web server to listen
STATIC = Path(__file__).parent / "static"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dashboard:
    """The dashboard of the service at ``publish``/``control``, served on ``host:port``.

    Binding anything but loopback needs a ``token``: the page shows the model's
    weights. ``port=0`` picks a free port; ``url`` says which. Use as a context
    manager, or ``start()`` and ``stop()``.

    >>> with Dashboard("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557", port=0) as board:
    ...     board.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, publish: str, control: str | None, host: str = "127.0.0.1",
                 port: int = 8050, token: str | None = None,
                 curve: tuple[str, str] | None = None) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(f"--host {host} would show the model's weights to the network; "
                             "pass --token SECRET (the page asks for it), or bind 127.0.0.1")
        self.host, self.port, self.token = host, port, token
        self.bridge = Bridge(publish, control, curve=curve)
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"Dashboard({self.url or f'{self.host}:{self.port}'!r}, {self.bridge!r})"

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Dashboard":
        """Subscribe to the service and serve the page from a thread of its own."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="dashboard-web",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or self._error is not None:
            self.stop()
            raise OSError(f"the dashboard could not listen on {self.host}:{self.port}: "
                          f"{self._error or 'timed out'}")
        self.bridge.start()
        return self

    def stop(self) -> None:
        """Close every page's stream, the web server and the subscriber."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._closing.set)
            self._thread.join(timeout=START_TIMEOUT)
        self.bridge.close()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop, self._closing = asyncio.get_running_loop(), asyncio.Event()
        self._runner = web.AppRunner(self._app(), handle_signals=False, shutdown_timeout=1.0)
        try:
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
        except OSError as e:
            self._error = e
            ready.set()
            await self._runner.cleanup()
            return
        port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        ready.set()
        await self._closing.wait()
        await self._runner.cleanup()

    # -- the routes -----------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/api/check", self._check)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_get("/api/models", self._models)
        app.router.add_static("/static/", STATIC)
        return app

    def _authorised(self, request: web.Request) -> bool:
        if not self.token:
            return True
        given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix(
            "Bearer ")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _refuse(self, request: web.Request) -> None:
        if not self._authorised(request):
            raise web.HTTPUnauthorized(text=json.dumps({"error": "wrong or missing token"}),
                                       content_type="application/json")

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _check(self, request: web.Request) -> web.Response:
        self._refuse(request)
        return web.json_response({"ok": True, "publish": self.bridge.publish,
                                  "control": self.bridge.control, "columns": COLUMNS,
                                  "orders": list(ORDERS)})

    async def _models(self, request: web.Request) -> web.Response:
        self._refuse(request)
        q = request.query
        try:
            offset = int(q.get("offset", 0))
            page = await asyncio.to_thread(self.bridge.models, q.get("order", "active"),
                                           q.get("search", ""), offset, int(q.get("limit", 20)))
        except (ValueError, TimeoutError, ServiceError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(page, dumps=_dumps)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._refuse(request)
        key = request.query.get("model", "")
        try:
            board = self.bridge.watch(key) if key else self.bridge.service
        except ValueError as e:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(e)}),
                                     content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            if key:
                await self._prime(key)
            await self._push(response, board, key)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away, or the server is stopping
        finally:
            if key:
                self.bridge.unwatch(key)
        return response

    async def _prime(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.bridge.prime, key)
        except (TimeoutError, ServiceError):  # no answer, or no such model yet: wait for messages
            pass

    async def _push(self, response: web.StreamResponse, board, key: str) -> None:
        """Send what changed, at most every ``PUSH_INTERVAL`` s, until the page or server closes."""
        seen, status, sent = Seen(), None, 0.0
        while not self._closing.is_set():
            update, seen = board.update(seen)
            changed = (update["points"]["rows"] or update["points"]["reset"] or len(update) > 1
                       or self.bridge.status != status)
            if changed or time.monotonic() - sent > KEEPALIVE:
                status = self.bridge.status
                body = {"status": status, "keyed": self.bridge.keyed, "model": key or None,
                        "board": update}
                await response.write(b"data: " + _dumps(body).encode() + b"\n\n")
                sent = time.monotonic()
            try:
                await asyncio.wait_for(self._closing.wait(), PUSH_INTERVAL)
            except asyncio.TimeoutError:
                pass


def _dumps(body) -> str:
    """JSON for the page; NaN and infinities are not JSON (the boards send None instead)."""
    return json.dumps(body, allow_nan=False, separators=(",", ":"))
