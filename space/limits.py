"""What one request may cost the Space: the bytes of its body, and the disk its uploads fill.

FastAPI's ``max_body_size`` is one figure for every route, and it must let an image through (twice the upload limit).
A JSON request that size waited in the queue as ~75 MB of memory, kept after it ran: 60 of them took the Space from
0.7 to 5.4 GB. And uploads land on disk, which the sweeper checked once a minute: at 100 MB/s a visitor could put
GBs there in between. So only Gradio's upload route gets the upload-sized limit, and only while the upload cache
has room.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import PlainTextResponse

import uploads

# The page's and the API's JSON requests carry component values (an uploaded file's path, a net's name, a slider's
# value): under 1 KB. Queued requests hold theirs until they run, several times over once parsed. MCP calls too:
# an image sent inline (a data: URI) must be under ~48 KB; larger ones are uploaded first (upload_file_to_gradio),
# as Gradio's MCP server asks of them. 100 MCP calls of 3.7 MB each held 2 GB.
MAX_JSON_BYTES = 64 * 1024

UPLOAD_ROUTE = "/gradio_api/upload"

# What the smallest file an upload brings costs the disk: a block (or an inode) for it and one for its folder
# (Gradio puts each upload in a folder named by its content). 1000 empty files per request cost 8 MB each.
FILE_BYTES = 2 * 4096
# Files (multipart parts) per upload request: the page and gradio_client send one. Gradio takes 1000, and each is
# charged FILE_BYTES before it is written: a request of many empty parts made the cache look full at little cost.
MAX_FILES_PER_UPLOAD = 4


class UploadCache:
    """Gradio's upload cache, kept under ``max_bytes`` of disk: swept every minute, and at once when it is full.

    Files younger than ``min_age_s`` are never deleted (a request may be about to read them), so an upload that finds
    the cache full of young files is refused until they age: a visitor then waits a minute, and the disk is safe.
    ``keep()`` names the page's own files there (the examples' copies), which are never deleted nor counted.
    ``forget(paths)`` is told what each sweep deleted (maybe nothing), on the server's event loop once one serves:
    Gradio keeps a set of every upload's path and drops one only when it deletes the file itself.
    """

    def __init__(self, folder: Path, max_bytes: int, min_age_s: float = 120.0, keep=lambda: frozenset(),
                 forget=lambda paths: None):
        self.folder, self.max_bytes, self.min_age_s, self.keep, self.forget = folder, max_bytes, min_age_s, keep, forget
        self.bytes = 0  # as of the last sweep, plus what uploads have brought since
        self._brought = 0  # by uploads, ever: what arrives during a sweep's walk counts after it
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, set by RequestLimits
        self._counting = threading.Lock()  # held for an addition only: the event loop takes it
        self._sweeping = threading.Lock()
        self._swept_at = float("-inf")

    def sweep(self, wait: bool = True) -> int:
        """Delete the oldest files old enough until the cache fits; returns the bytes left. ``wait=False``: if a sweep
        is already running, leave it to that one (a walk of a large cache must not be repeated by every request)."""
        if not self._sweeping.acquire(blocking=wait):
            return self.bytes
        try:
            self._swept_at = time.monotonic()
            brought = self._brought
            deleted = []
            try:  # down to half its size: swept only to its bound, a full cache took no upload again, ever
                left = uploads.sweep(self.folder, self.max_bytes, self.min_age_s, keep=self.keep(), deleted=deleted,
                                     target_bytes=self.max_bytes // 2)
            except OSError:  # a folder gone mid-walk: the estimate stands until the next sweep
                return self.bytes
            finally:
                self._forget(deleted)
            with self._counting:
                self.bytes = left + self._brought - brought
                return self.bytes
        finally:
            self._sweeping.release()

    def _forget(self, paths: list[str]) -> None:
        if self.loop is None or self.loop.is_closed():
            self.forget(paths)
        else:  # Gradio reads its sets on the event loop
            self.loop.call_soon_threadsafe(self.forget, paths)

    def has_room(self) -> bool:
        """Whether an upload may come in now: not while the cache is over its size, after a sweep (at most one
        started every 5 s, and none while one runs: a walk of 250,000 files took 12 s)."""
        if self.bytes <= self.max_bytes:
            return True
        if time.monotonic() - self._swept_at >= 5.0:
            self.sweep(wait=False)
        return self.bytes <= self.max_bytes

    def received(self, size: int) -> bool:
        """Count bytes an upload brought; whether the cache is still within its size."""
        with self._counting:
            self.bytes += size
            self._brought += size
            return self.bytes <= self.max_bytes

    def sweep_in_background(self, every_s: float = 60.0) -> None:
        """Sweep now (what an earlier run left counts too, and its empty folders go), then every ``every_s``."""
        def loop():
            while True:
                try:
                    self.sweep()
                except Exception as error:  # noqa: BLE001 - a bug here must not end the sweeping for good
                    print(f"upload sweeper: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                time.sleep(every_s)

        threading.Thread(target=loop, name="upload-sweeper", daemon=True).start()

    def full_message(self) -> str:
        return (f"The Space has taken in all the uploads it can hold ({self.max_bytes / 2**20:.0f} MB) in the last "
                f"{self.min_age_s / 60:.0f} minutes; try again in a minute.")


def count_inline_files(cache: UploadCache) -> None:
    """Gradio's MCP server writes every data: URI in a tool call into the upload cache (and preprocessing copies it
    once more), out of RequestLimits' sight, which sees Gradio's upload route: 2,500 calls of 47 KB took a 200 MB
    cache to 243 MB and kept every visitor's uploads refused. Each is counted as two files of its decoded size, and
    refused while the cache is full (a sweep is started, in a thread: this runs on the event loop)."""
    from gradio import processing_utils

    save = processing_utils.save_base64_to_cache
    if getattr(save, "cache", None) is not None:  # wrapped already: count into the cache of now
        save = save.wrapped

    def counted(base64_encoding: str, cache_dir: str, file_name: str | None = None) -> str:
        if cache.bytes > cache.max_bytes:
            threading.Thread(target=cache.has_room, name="upload-sweep", daemon=True).start()
            raise InlineFileRefused(cache.full_message())
        cache.received(2 * (len(base64_encoding) * 3 // 4 + FILE_BYTES))
        return save(base64_encoding, cache_dir, file_name)

    counted.cache, counted.wrapped = cache, save
    processing_utils.save_base64_to_cache = counted


class InlineFileRefused(ValueError):
    """An image sent inline (a data: URI) while the upload cache is full."""


class StaleUploadProgress:
    """Drops what Gradio keeps of uploads' progress (the page's progress bar) and nobody reads any more.

    Gradio keeps an event for every ``upload_id`` it is given, for good, and a tracker until a reader follows it to
    the end: 2 KB per upload that nobody followed (40,000 took the Space from 803 to 887 MB). Called on the event loop
    after each sweep, a minute apart: events of ids no longer tracked since the last call go, and so do trackers
    there at the last two calls (past any upload's deadline).
    """

    def __init__(self, progress):
        self.progress = progress
        self._seen: list[set] = [set(), set()]  # ids at the last two calls

    def __call__(self) -> None:
        trackers, events = getattr(self.progress, "_statuses", None), getattr(self.progress, "_signals", None)
        if not isinstance(trackers, dict) or not isinstance(events, dict):
            return  # another Gradio's; left alone
        for upload_id in self._seen[0] & self._seen[1] & trackers.keys():
            del trackers[upload_id]
        for upload_id in self._seen[1] - trackers.keys():
            events.pop(upload_id, None)
        self._seen = [self._seen[1], set(trackers) | set(events)]


class _Refused(Exception):
    """An upload refused, before or while its body arrives; answered as plain text (an HTTPException became JSON,
    and the page's toast showed its braces)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.response = PlainTextResponse(message, status_code=status, headers=headers)


class _Marks:
    """Counts a marker in a stream of chunks, also where it spans two of them."""

    def __init__(self, marker: bytes):
        self.marker, self.count, self._tail = marker, 0, b""

    def feed(self, chunk: bytes) -> int:
        data = self._tail + chunk
        self.count += data.count(self.marker)
        self._tail = data[1 - len(self.marker):]  # shorter than the marker: one found whole is not counted again
        return self.count


class RequestLimits:
    """ASGI middleware: request bodies bounded by ``max_json_bytes``, or by ``max_file_bytes`` on Gradio's upload.

    An upload's body is counted into ``cache`` as it arrives, each file in it as at least FILE_BYTES, and must arrive
    within ``body_s`` (a body dripping now and then kept its file young, so never swept, and uploads refused for as
    long as the connection lasted). It gets a 503 (Retry-After: 60) while the cache is full, or as soon as it fills
    while the body arrives (100 uploads opened at once all passed a check made at their start: 100x the bound).

    The only body limit of the app: FastAPI's ``max_body_size`` is set again on every route, and the innermost
    limit wins, so a lower one here would be undone.
    """

    def __init__(self, app, *, cache: UploadCache, max_file_bytes: int, max_json_bytes: int = MAX_JSON_BYTES,
                 body_s: float = 120.0):
        self.cache, self.body_s = cache, body_s
        self.upload_app = RequestBodyLimitMiddleware(app, max_file_bytes)
        self.json_app = RequestBodyLimitMiddleware(app, max_json_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if self.cache.loop is None:
            self.cache.loop = asyncio.get_running_loop()
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        if scope["type"] != "http" or path != UPLOAD_ROUTE:
            await self.json_app(scope, receive, send)  # it passes anything but HTTP through
            return
        if scope["method"] != "POST":
            await self.upload_app(scope, receive, send)
            return
        started = False

        async def noted_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            boundary = _multipart_boundary(scope)
            if boundary is None:  # Gradio's parser split a body with an empty boundary on any "--": parts uncounted
                raise _Refused(400, "An upload is a multipart/form-data body with a boundary.")
            if not await run_in_threadpool(self.cache.has_room):
                raise self._full()
            # A part's delimiter, as the parser finds it: a CRLF, then "--" and the boundary (the first one may open
            # the body: primed with a CRLF). One more than the parts, with the closing one.
            delimiters = _Marks(b"\r\n--" + boundary)
            delimiters.feed(b"\r\n")
            # No charge is given back, even for a refused upload: Gradio's answer does not say what stays on disk
            # (a 400 for a bad file name came after three files were kept; parts not named "files" stay behind
            # "200 []"), and refunds let a reviewer put 191 MB on a 20 MB cache between two sweeps.
            await self.upload_app(scope, self._counted(receive, delimiters), noted_send)
        except _Refused as refusal:
            if started:
                raise
            await refusal.response(scope, receive, send)

    def _full(self) -> _Refused:
        return _Refused(503, self.cache.full_message(), headers={"Retry-After": "60"})

    def _counted(self, receive, delimiters: _Marks):
        """``receive`` that counts the body into the cache, and stops it when the cache is full, it brings too many
        files, or its time is up."""
        deadline = asyncio.get_running_loop().time() + self.body_s

        async def counted_receive():
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                raise _Refused(408, f"An upload must arrive within {self.body_s:.0f} s.") from None
            if message["type"] == "http.request":
                body = message.get("body", b"")
                before = delimiters.count
                if delimiters.feed(body) > MAX_FILES_PER_UPLOAD + 1:
                    raise _Refused(413, f"An upload request may carry at most {MAX_FILES_PER_UPLOAD} files.")
                if not self.cache.received(len(body) + (delimiters.count - before) * FILE_BYTES) \
                        and not await run_in_threadpool(self.cache.has_room):  # a sweep may make room
                    raise self._full()
            return message

        return counted_receive


def _multipart_boundary(scope) -> bytes | None:
    """The boundary of a multipart body, as Starlette's and Gradio's parsers read it; None without one."""
    content_type, options = parse_options_header(Headers(scope=scope).get("content-type", ""))
    if not content_type.startswith(b"multipart/"):
        return None
    return options.get(b"boundary") or None
