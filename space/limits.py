"""What one request may cost the Space: the bytes of its body, and the disk its uploads fill.

FastAPI's ``max_body_size`` is one figure for every route, and it must let an image through (twice the upload limit).
A JSON request that size waited in the queue as ~75 MB of memory, kept after it ran: 60 of them took the Space from
0.7 to 5.4 GB. And uploads land on disk, which the sweeper checked once a minute: at 100 MB/s a visitor could put
GBs there in between. So only the routes that take files get the upload-sized limit, and they only while the upload
cache has room.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import PlainTextResponse

import uploads

# The page's and the API's JSON requests carry component values (an uploaded file's path, a net's name, a slider's
# value): under 1 KB. Queued requests hold theirs until they run, several times over once parsed.
MAX_JSON_BYTES = 64 * 1024

# Routes whose bodies may hold a file: Gradio's upload, and its MCP server, whose clients may send images inline
# (data: URIs, saved to the upload cache).
FILE_ROUTES = ("/gradio_api/upload", "/gradio_api/mcp")


class UploadCache:
    """Gradio's upload cache, kept under ``max_bytes``: swept every minute, and at once when it is full.

    Files younger than ``min_age_s`` are never deleted (a request may be about to read them), so an upload that finds
    the cache full of young files is refused until they age: a visitor then waits a minute, and the disk is safe.
    ``keep()`` names the page's own files there (the examples' copies), which are never deleted nor counted.
    """

    def __init__(self, folder: Path, max_bytes: int, min_age_s: float = 120.0, keep=lambda: frozenset()):
        self.folder, self.max_bytes, self.min_age_s, self.keep = folder, max_bytes, min_age_s, keep
        self.bytes = 0  # as of the last sweep, plus what uploads have brought since
        self._lock = threading.Lock()
        self._swept_at = float("-inf")

    def sweep(self) -> int:
        """Delete the oldest files old enough until the cache fits; returns the bytes left."""
        with self._lock:
            try:
                self.bytes = uploads.sweep(self.folder, self.max_bytes, self.min_age_s, keep=self.keep()) \
                    if self.folder.is_dir() else 0
            except OSError:  # a folder gone mid-walk: the estimate stands until the next sweep
                pass
            self._swept_at = time.monotonic()
            return self.bytes

    def has_room(self) -> bool:
        """Whether an upload may come in now: not while the cache is over its size, after a sweep (at most one a
        second: a flood of refused uploads does not walk the disk)."""
        if self.bytes <= self.max_bytes:
            return True
        if time.monotonic() - self._swept_at >= 1.0:
            self.sweep()
        return self.bytes <= self.max_bytes

    def received(self, size: int) -> None:
        with self._lock:
            self.bytes += size

    def sweep_in_background(self, every_s: float = 60.0) -> None:
        def loop():
            while True:
                time.sleep(every_s)
                self.sweep()

        threading.Thread(target=loop, name="upload-sweeper", daemon=True).start()

    def full_message(self) -> str:
        return (f"The Space has taken in all the uploads it can hold ({self.max_bytes / 2**20:.0f} MB) in the last "
                f"{self.min_age_s / 60:.0f} minutes; try again in a minute.")


class RequestLimits:
    """ASGI middleware: request bodies bounded by ``max_json_bytes``, or by ``max_file_bytes`` on FILE_ROUTES, whose
    bodies are also counted into ``cache``, and which get a 503 (Retry-After: 60) while the cache is full.

    The only body limit of the app: FastAPI's ``max_body_size`` is set again on every route, and the innermost
    limit wins, so a lower one here would be undone.
    """

    def __init__(self, app, *, cache: UploadCache, max_file_bytes: int, max_json_bytes: int = MAX_JSON_BYTES):
        self.cache = cache
        self.file_app = RequestBodyLimitMiddleware(app, max_file_bytes)
        self.json_app = RequestBodyLimitMiddleware(app, max_json_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.json_app(scope, receive, send)  # it passes anything else through
            return
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if not any(path == route or path.startswith(route + "/") for route in FILE_ROUTES):
            await self.json_app(scope, receive, send)
            return
        if scope["method"] == "POST" and not await run_in_threadpool(self.cache.has_room):
            refusal = PlainTextResponse(self.cache.full_message(), status_code=503, headers={"Retry-After": "60"})
            await refusal(scope, receive, send)
            return

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                self.cache.received(len(message.get("body", b"")))
            return message

        await self.file_app(scope, counted_receive, send)
