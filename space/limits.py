"""What one request, and one client, may cost the Space: the bytes of a body, the disk uploads fill, and how often
one address may ask for work.

FastAPI's ``max_body_size`` is one figure for every route, and it must let an image through (twice the upload limit).
A JSON request that size waited in the queue as ~75 MB of memory, kept after it ran: 60 of them took the Space from
0.7 to 5.4 GB. And uploads land on disk, which the sweeper checked once a minute: at 100 MB/s a visitor could put
GBs there in between. So only Gradio's upload route gets the upload-sized limit, and only while the upload cache
has room.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from urllib.parse import parse_qs

from gradio.route_utils import get_request_origin
from gradio.server_messages import UnexpectedErrorMessage
from httpx import InvalidURL
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

import uploads

# The page's and the API's JSON requests carry component values (an uploaded file's path, a net's name, a slider's
# value): under 1 KB. Queued requests hold theirs until they run, several times over once parsed. MCP calls too:
# an image sent inline (a data: URI) must be under ~48 KB; larger ones are uploaded first (upload_file_to_gradio),
# as Gradio's MCP server asks of them. 100 MCP calls of 3.7 MB each held 2 GB.
MAX_JSON_BYTES = 64 * 1024

UPLOAD_ROUTE = "/gradio_api/upload"
MCP_ROUTE = "/gradio_api/mcp"
# An MCP client's session: a GET answered by an event stream for as long as the client stays, ~300 KB of the Space's
# memory each (1000 sessions opened from one address took 320 MB); held as one of the client's requests.
MCP_SESSIONS = MCP_ROUTE + "/sse"
# Other GETs answered by an event stream that stays open as long as its client likes: a page's heartbeat and its
# queue's stream, an API call's result stream, an upload's progress (~38 KB and a file descriptor each). 20,000
# heartbeats from one address took every file descriptor of the Space, and pages stopped loading. Held per client
# (PerClient.streams) and in all (RequestLimits.max_streams), not charged as requests: a queue's stream follows the
# request that asked (charged then), and refused it lost the answer and reloaded the page.
QUEUE_STREAM, CALL_STREAMS = "/gradio_api/queue/data", "/gradio_api/call/"  # a page's answers; an API call's
STREAM_ROUTES = ("/gradio_api/heartbeat/", QUEUE_STREAM, CALL_STREAMS, "/gradio_api/upload_progress")
# Routes of what the Space does not use, answered 404: Gradio's development mode (`gradio app.py`), whose stream woke
# every 50 ms, held open, uncounted (200 of them took 30% of a core), and custom components' files (that route
# printed every request's path to the log, 60 KB for a 60 KB path).
UNUSED_ROUTES = ("/gradio_api/dev/", "/gradio_api/custom_component/")
# `file=<http(s) URL>`: Gradio fetches any public URL for whoever asks and streams it back, an open proxy. The Space
# fetches no URL: its files are on its disk.
FILE_ROUTE, URLS = "/gradio_api/file=", ("http://", "https://")  # what Gradio takes for a URL, exactly
# A Range Gradio's file= route can split (it answers `bytes=<start>-<end>` itself and leaves the rest to Starlette).
SPLITTABLE_RANGE = re.compile(rb"bytes=[0-9]*-[0-9]*")
# The headers Gradio builds its URLs from: a host name is at most 253 characters, and a 15 KB one took ~35 ms to
# parse, on every route.
ORIGIN_HEADERS, ORIGIN_HEADER_BYTES = (b"host", b"x-forwarded-host", b"x-gradio-server"), 1024
# Where an event's id is answered: Gradio then keeps the event's answer until its client reads it (PerClient.joined).
JOIN_ROUTES = ("/gradio_api/queue/join", "/gradio_api/call/")
SMALL_BODY = 4096  # the page's and the API's JSON bodies are under 1 KB; MCP's inline images are up to 64 KB

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


class ClientBuckets:
    """A token bucket per client: ``capacity`` at once, refilled at ``per_second``. A bucket may go into debt (bytes
    counted as they arrive). The ``max_clients`` most recently charged are remembered: one forgotten starts full
    again, as after a pause (addresses a client makes up cost memory, not the others' shares)."""

    def __init__(self, capacity: float, per_second: float, max_clients: int = 100_000, clock=time.monotonic):
        self.capacity, self.per_second, self.max_clients, self.clock = capacity, per_second, max_clients, clock
        self._levels: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (level, as of)

    def level(self, client: str) -> float:
        level, at = self._levels.get(client, (self.capacity, float("-inf")))
        return min(self.capacity, level + (self.clock() - at) * self.per_second)

    def wait_s(self, client: str, amount: float) -> float:
        """Seconds until ``client``'s bucket holds ``amount`` (at most its capacity); 0 if it does now."""
        missing = min(amount, self.capacity) - self.level(client)
        return max(0.0, missing / self.per_second)

    def take(self, client: str, amount: float) -> float:
        """Take ``amount``, into debt if need be; returns the level left."""
        level = self.level(client) - amount
        self._levels[client] = (level, self.clock())
        self._levels.move_to_end(client)
        while len(self._levels) > self.max_clients:
            self._levels.popitem(last=False)
        return level


class PerClient:
    """What one client may ask of the Space, so that one cannot take it from everyone:

    - ``burst`` requests for work (every POST: a queued event, an API or MCP call, an upload) at once, then
      ``per_second``;
    - at most ``at_once`` of them waiting, running or open (events in Gradio's queue and answers not yet read,
      counted by ``queued(client)``; requests still being answered; MCP sessions): a request's cost varies (a
      160 KB PNG of 49 MP takes 1.5 s to decode), so a rate alone let one address queue work faster than the Space
      does it. An answer left unread for ``unread_s`` is forgotten (count_queued);
    - at most ``streams`` other event streams open (a page's heartbeat and queue stream, an API call's result);
    - ``upload_bytes`` of request bodies in any ``window_s`` (the age under which uploads are never swept): a bucket of
      half of it, refilled by the other half over the window. An upload's Content-Length is taken when it starts, so
      that uploads started side by side cannot all pass one check.

    A client is its address: the connection's (uvicorn has applied X-Forwarded-For from a proxy on this machine), or,
    ``forwarded`` (on Spaces, whose proxy connects from its own address), the first address of X-Forwarded-For, as
    the client sent it. An IPv6 client is its /64 (one machine is given one). This machine itself (a connection from
    127.0.0.1 or ::1 that no proxy speaks for: the operator) is not limited; Gradio's MCP server calling the Space's
    own API speaks for its caller (RequestLimits sets its X-Forwarded-For).
    """

    def __init__(self, burst: int, per_second: float, upload_bytes: int, window_s: float, *, at_once: int = 8,
                 streams: int = 32, unread_s: float = 60.0, forwarded: bool = False, queued=lambda client: 0,
                 clock=time.monotonic):
        self.requests = ClientBuckets(burst, per_second, clock=clock)
        self.bytes = ClientBuckets(upload_bytes / 2, upload_bytes / 2 / window_s, clock=clock)
        self.upload_bytes, self.window_s, self.at_once, self.forwarded = upload_bytes, window_s, at_once, forwarded
        self.streams, self.unread_s = streams, unread_s
        self.queued, self.clock = queued, clock
        self.answerable = lambda path, query: True  # count_queued: whether Gradio knows a result stream's event
        self.answering: dict[str, int] = {}  # client -> requests being answered
        self.streaming: dict[str, int] = {}  # client -> event streams open (STREAM_ROUTES)
        # event id -> [client, when it was first seen answered and unread]: count_queued counts and forgets them
        self.events: dict[str, list] = {}
        self.refused, self._logged_at = 0, clock()

    def address(self, scope) -> str | None:
        """The client's key; None for this machine: a connection from it that no proxy speaks for (an
        X-Forwarded-For naming 127.0.0.1 is anyone's to send, also where uvicorn trusts every proxy)."""
        forwarded = [value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
        if self.forwarded and forwarded:
            client = _ip_address(forwarded[0].decode("latin-1").split(",")[0])
            if client is not None and client not in LOCAL:
                return client
        peer = _peer(scope)
        client = _ip_address(peer) or peer[:100]
        return None if client in LOCAL and not forwarded else client

    def admit(self, client: str, body_bytes: int, upload: bool, *, hold: bool = True,
              cap: bool = True) -> _Refused | None:
        """Charges one request and reserves ``body_bytes`` of the client's upload share, if both are there and (with
        ``cap``) the client has fewer than ``at_once`` requests waiting, running or open; a refusal saying when to come
        back if not. With ``hold``, the request counts as running until ``done(client)``."""
        wait = self.requests.wait_s(client, 1)
        if wait:
            capacity, rate = self.requests.capacity, self.requests.per_second
            return self.refusal(wait, upload, f"Too many requests from your address: the Space takes {capacity:g} "
                                               f"at once from one address, then {rate:g} a second.")
        if cap and self.answering.get(client, 0) + self.queued(client) >= self.at_once:
            return self.refusal(2, upload, f"Your address has {self.at_once} requests waiting, running or open (an "
                                           "answer is open until it is read, an MCP session until its client closes "
                                           "it), as many as the Space takes from one address; wait for one to end.")
        need = body_bytes or (1 if upload else 0)  # an upload of no announced size: the share must not be spent
        wait = self.bytes.wait_s(client, need) if need else 0
        if wait:
            return self.refusal(wait, upload, self.share_message())
        self.requests.take(client, 1)
        self.bytes.take(client, body_bytes)
        if hold:
            self.answering[client] = self.answering.get(client, 0) + 1
        return None

    def done(self, client: str) -> None:
        left = self.answering.pop(client, 1) - 1
        if left > 0:
            self.answering[client] = left

    def joined(self, event_id: str, client: str) -> None:
        """``client``'s event ``event_id`` is in Gradio's queue: once answered, its answer counts as the client's
        until it is read (count_queued)."""
        self.events[event_id] = [client, None]

    def open_stream(self, client: str, known: bool = True) -> _Refused | None:
        """Holds one of the client's ``streams`` until ``close_stream(client)``, if it has one left. A stream for an
        event Gradio does not know (not ``known``) is charged as a request: its answer is cheap, but not free."""
        if not known:
            refusal = self.admit(client, 0, upload=False, hold=False, cap=False)
            if refusal is not None:
                return refusal
        if not self.stream_room(client):
            return self.refusal(5, False, f"Your address has {self.streams} event streams open (a page holds one or "
                                          "two while it is open), as many as the Space keeps for one address; close "
                                          "a page or wait for a stream to end.")
        self.streaming[client] = self.streaming.get(client, 0) + 1
        return None

    def stream_room(self, client: str) -> bool:
        return self.streaming.get(client, 0) < self.streams

    def close_stream(self, client: str) -> None:
        left = self.streaming.pop(client, 1) - 1
        if left > 0:
            self.streaming[client] = left

    def share_message(self) -> str:
        every = f"{self.window_s / 60:g} minutes" if self.window_s % 60 == 0 else f"{self.window_s:g} s"
        return (f"Your uploads have filled your share of the Space's upload room ({_mb(self.upload_bytes)} "
                f"every {every}).")

    def refusal(self, wait: float, upload: bool, message: str) -> _Refused:
        seconds = max(1, math.ceil(wait))
        self.refused += 1
        now = self.clock()
        if now - self._logged_at >= 60:  # one line a minute at most: a flood must not flood the log too
            print(f"per-client limits: {self.refused} request(s) refused in the last {now - self._logged_at:.0f} s",
                  file=sys.stderr, flush=True)
            self.refused, self._logged_at = 0, now
        return _Refused(429, f"{message} Try again in {seconds} s.", headers={"Retry-After": str(seconds)},
                        json=not upload)


def count_queued(blocks, clients: PerClient) -> None:
    """Sets ``clients.queued`` to count a client's events in Gradio's queue, waiting or running, and its answers not
    yet read, from the queue's own records (Gradio keeps no count per client); 0 for a queue of another shape.

    Gradio keeps an event's answer until a stream of its session reads it, however long that takes: /filters asked
    again and again, never read, took 2 MB each (+530 MB in a minute from one address, within its rate). So an answer
    counts among its client's requests until it is read, and a session whose answers have all waited ``unread_s``
    unread is forgotten, answers and all."""
    def queued(client: str) -> int:
        queue = getattr(blocks, "_queue", None)
        try:
            events = [event for waiting in queue.event_queue_per_concurrency_id.values() for event in waiting.queue]
            events += [event for job in queue.active_jobs if job for event in job]
            pending, answers = queue.pending_event_ids_session, queue.pending_messages_per_session
            live = {event._id for event in events}
        except (AttributeError, TypeError):
            return 0
        _forget_unread(clients, pending, answers, live)
        return sum(1 for event in events if getattr(event, "request", None) is not None
                   and clients.address(event.request.scope) == client) \
            + sum(1 for ids in pending.values() for event_id in ids
                  if event_id not in live and clients.events.get(event_id, (None,))[0] == client)

    def answerable(path: str, query: bytes) -> bool:
        """Whether Gradio knows the session or event a result stream asks for, as its route will look it up (False:
        Gradio would answer "session not found", RequestLimits does instead). True where Gradio answers otherwise."""
        queue = getattr(blocks, "_queue", None)
        try:
            if path == QUEUE_STREAM:
                # as Starlette reads a query: blank values kept, the last of a repeated name wins
                sessions = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("session_hash")
                return sessions is None or sessions[-1] in queue.pending_messages_per_session  # none: a 422
            if path.startswith(CALL_STREAMS):
                parts = path.removeprefix(CALL_STREAMS).split("/")  # api/event, or v2/api/event
                if not all(parts) or not (len(parts) == 2 or len(parts) == 3 and parts[0] == "v2"):
                    return True  # not Gradio's route: its 404 or 405
                # An event's id stays among its session's pending ones from its join until its answer is read. Not
                # by its messages' queue, or the queue's table of events: Gradio keeps the one for good, the other a
                # moment after the answer is read, and a second read waited for ever on heartbeats, holding one of
                # its client's streams.
                return any(parts[-1] in ids for ids in queue.pending_event_ids_session.values())
        except (AttributeError, TypeError):
            pass
        return True

    clients.queued, clients.answerable = queued, answerable


def _forget_unread(clients: PerClient, pending: dict, answers, live: set) -> None:
    """Notes when each client's answer was first seen unread, forgets sessions whose answers have all waited
    ``clients.unread_s`` (their streams, if any, then end with "session not found"), and the ids read since. Gradio
    keeps a session's empty set of ids for good once its answers are read (one per API call): those go too, or this
    walk, once a request, would grow with every call the Space ever took."""
    now, known = clients.clock(), set()
    for session, ids in list(pending.items()):
        if not ids:
            pending.pop(session, None)
            continue
        known |= ids
        stale = bool(ids)
        for event_id in ids:
            noted = clients.events.get(event_id)
            if noted is None or event_id in live:
                stale = False  # this machine's, or not answered yet
                continue
            noted[1] = now if noted[1] is None else noted[1]
            stale = stale and now - noted[1] >= clients.unread_s
        if stale:
            pending.pop(session, None)
            answers.pop(session, None)
            known -= ids
    for event_id in [event_id for event_id in clients.events if event_id not in known]:
        del clients.events[event_id]


LOCAL = frozenset({"127.0.0.1", "::1"})  # client keys of this machine


def _ip_address(text: str) -> str | None:
    """An address as a client key: IPv4 as it is, IPv6 as its /64 (::1 as it is); None if ``text`` is not one."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address.is_loopback:
            return "::1"
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))  # int: without a %zone
    return str(address)


def _mb(size: float) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size / 1024:.0f} KB"


class _Refused(Exception):
    """A request refused, before or while its body arrives. An upload's refusal is plain text (an HTTPException
    became JSON, and the page's toast showed its braces); any other is JSON with a "detail", which the page shows."""

    def __init__(self, status: int, message: str, headers: dict | None = None, json: bool = False):
        super().__init__(message)
        self.status, self.headers = status, headers
        self.response = (JSONResponse({"detail": message, "error": message}, status_code=status, headers=headers)
                         if json else PlainTextResponse(message, status_code=status, headers=headers))

    def json_rpc(self) -> _Refused:
        """The same refusal as a JSON-RPC error, which an MCP client shows (it took a bare status for a broken
        transport)."""
        self.response = JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": str(self)}},
                                     status_code=self.status, headers=self.headers)
        return self


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
    """ASGI middleware: request bodies bounded by ``max_json_bytes``, or by ``max_file_bytes`` on Gradio's upload;
    with ``clients``, each client's requests and bytes too (PerClient: a 429 saying when to come back), its MCP
    sessions, held as requests while they are open, and its other event streams (STREAM_ROUTES). At most
    ``max_streams`` event streams are open in all (a 503 beyond): each holds a file descriptor.

    An upload's body is counted into ``cache`` as it arrives, each file in it as at least FILE_BYTES, and must arrive
    within ``body_s`` (a body dripping now and then kept its file young, so never swept, and uploads refused for as
    long as the connection lasted). It gets a 503 (Retry-After: 60) while the cache is full, or as soon as it fills
    while the body arrives (100 uploads opened at once all passed a check made at their start: 100x the bound).

    The only body limit of the app: FastAPI's ``max_body_size`` is set again on every route, and the innermost
    limit wins, so a lower one here would be undone.
    """

    def __init__(self, app, *, cache: UploadCache, max_file_bytes: int, max_json_bytes: int = MAX_JSON_BYTES,
                 body_s: float = 120.0, clients: PerClient | None = None, max_streams: int = 4096):
        self.cache, self.body_s, self.clients = cache, body_s, clients
        self.max_file_bytes, self.max_json_bytes = max_file_bytes, max_json_bytes
        self.max_streams, self.streams_open = max_streams, 0
        self.upload_app = RequestBodyLimitMiddleware(app, max_file_bytes)
        self.json_app = RequestBodyLimitMiddleware(app, max_json_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if self.cache.loop is None:
            self.cache.loop = asyncio.get_running_loop()
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        upload = path == UPLOAD_ROUTE
        get = scope["type"] == "http" and scope["method"] == "GET"
        if scope["type"] == "http" and (unreadable := _unreadable_origin(scope)):
            refusal = _Refused(400, unreadable, json=not upload)
            await (refusal.json_rpc() if path.startswith(MCP_ROUTE) and not get else refusal).response(
                scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if path.startswith(UNUSED_ROUTES):
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
                return
            if path.startswith(FILE_ROUTE) and path.removeprefix(FILE_ROUTE).startswith(URLS):
                await PlainTextResponse("The Space fetches no URLs: file= serves its own files only.",
                                        status_code=403)(scope, receive, send)
                return
            if path.startswith(FILE_ROUTE):
                scope = _file_request(scope)
        # /sse, or the standalone stream of streamable HTTP (not /schema and the like, answered at once)
        session = get and (path.startswith(MCP_SESSIONS) or path.rstrip("/") == MCP_ROUTE)
        if get and (session or path.startswith(STREAM_ROUTES)):
            if self.streams_open >= self.max_streams:
                await _Refused(503, "The Space has as many event streams open as it can keep; try again in a minute.",
                               headers={"Retry-After": "60"}, json=True).response(scope, receive, send)
                return
            self.streams_open += 1
            try:
                await (self._admitted(scope, receive, send, path, upload, session) if session
                       else self._stream(scope, receive, send, path))
            finally:
                self.streams_open -= 1
            return
        if scope["type"] != "http" or scope["method"] != "POST":
            await (self.upload_app if upload else self.json_app)(scope, receive, send)  # it passes non-HTTP through
            return
        await self._admitted(scope, receive, send, path, upload, session)

    async def _stream(self, scope, receive, send, path: str) -> None:
        """A GET answered by an event stream, held as one of its client's streams while it lasts."""
        client = self.clients.address(scope) if self.clients is not None else None
        known = self.clients is None or self.clients.answerable(path, scope.get("query_string", b""))
        if client is not None:
            refusal = self.clients.open_stream(client, known)
            if refusal is not None:
                await refusal.response(scope, receive, send)
                return
        try:
            await (self.json_app if known else _session_not_found(path))(scope, receive, send)
        finally:
            if client is not None:
                self.clients.close_stream(client)

    async def _admitted(self, scope, receive, send, path: str, upload: bool, session: bool) -> None:
        """A POST, or an MCP session's GET, charged to its client and held as one of its requests while it lasts."""
        started, status, answer = False, 0, b""
        joined = path.startswith(JOIN_ROUTES) and self.clients is not None

        async def noted_send(message):
            nonlocal started, status, answer
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
            elif joined and client is not None and status == 200 and message["type"] == "http.response.body":
                answer = (answer + message.get("body", b""))[:1024]  # {"event_id": "..."}
                if not message.get("more_body", False):
                    _note_event(self.clients, answer, client)
            await send(message)

        client, held, length, reading = None, False, _content_length(scope), False
        # The upload share counts what may land on disk: uploads, and JSON bodies over SMALL_BODY (MCP's inline
        # images); a click's or an API call's body is not its business. A Content-Length over the route's limit gets
        # the body limit's 413 without a byte read: nothing is taken (one such header locked an address out).
        limit = self.max_file_bytes if upload else self.max_json_bytes
        reserved = length if (upload or length > SMALL_BODY) and length <= limit else 0
        mcp = path.startswith(MCP_ROUTE)
        try:
            client = self.clients.address(scope) if self.clients is not None else None
            if client is not None:
                # An MCP call runs as an event of the Space's own API, which Gradio's MCP server queues over HTTP
                # from this machine, forwarding the call's headers: the event is the client's (counted in the
                # queue, also once the caller hangs up), and the call itself is not held twice. A Stop is taken
                # even when all of the client's requests are running.
                held = session or not mcp
                refusal = self.clients.admit(client, reserved, upload, hold=held, cap=not path.endswith("/cancel"))
                if refusal is not None:
                    held = False
                    raise refusal
                if mcp and not self.clients.forwarded:
                    scope = _speaking_for(scope, _peer(scope))
            if length > limit:  # Starlette's body limit would answer a bare "Content Too Large"
                raise _Refused(413, self._too_large(length, upload, mcp), json=not upload)
            if not upload:
                await self.json_app(scope, self._counted(receive, client if length <= 0 or reserved else None,
                                                         reserved, upload), noted_send)
                return
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
            reading = True  # _counted drains what is left of a body it refuses
            await self.upload_app(scope, self._counted(receive, client, reserved, upload, delimiters), noted_send)
        except _Refused as refusal:
            if started:
                raise
            if upload and not reading and length <= limit:
                await self._drain(receive, client)
            await (refusal.json_rpc() if mcp and not session else refusal).response(scope, receive, send)
        finally:
            if held:
                self.clients.done(client)

    def _too_large(self, length: int, upload: bool, mcp: bool) -> str:
        if upload:
            return (f"An upload may be at most {_mb(self.max_file_bytes // 2)} (its request body "
                    f"{_mb(self.max_file_bytes)}); this request's body is {_mb(length)}.")
        if mcp:
            return (f"A call to the MCP server may be at most {_mb(self.max_json_bytes)}: send a larger image by "
                    f"uploading it first ({UPLOAD_ROUTE}, or the upload_file_to_gradio tool of `gradio upload-mcp`) "
                    "and passing its URL.")
        return (f"A request body may be at most {_mb(self.max_json_bytes)} here; images are uploaded first "
                f"({UPLOAD_ROUTE}) and named by their path.")

    def _full(self) -> _Refused:
        return _Refused(503, self.cache.full_message(), headers={"Retry-After": "60"})

    async def _drain(self, receive, client: str | None, deadline: float | None = None) -> None:
        """Reads and drops what is left of a refused upload's body, until its deadline, so that its client, still
        sending, reads the refusal: answered sooner, the server stopped reading and then closed the connection under
        it, and the client got a reset instead of the message (a browser's "connection reset"). The connection is
        held meanwhile, as one of the client's event streams and the Space's: with no room, the refusal goes now."""
        clients = self.clients
        if self.streams_open >= self.max_streams or (client is not None and not clients.stream_room(client)):
            return
        if client is not None:
            clients.open_stream(client)  # there is room: it holds one
        self.streams_open += 1
        loop = asyncio.get_running_loop()
        deadline = deadline or loop.time() + self.body_s
        try:
            while True:
                try:
                    message = await asyncio.wait_for(receive(), deadline - loop.time())
                except TimeoutError:
                    return
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
        finally:
            self.streams_open -= 1
            if client is not None:
                clients.close_stream(client)

    def _counted(self, receive, client: str | None, reserved: int, upload: bool, delimiters: _Marks | None = None):
        """``receive`` that counts the body into the client's share (beyond the ``reserved`` bytes its Content-Length
        took), and an upload's into the cache; it stops an upload when either is spent, when it brings too many
        files, or when its time is up. A JSON body is only counted: a refusal while the app reads it became a 400 or
        a 500 with a traceback (and it is at most MAX_JSON_BYTES)."""
        deadline = asyncio.get_running_loop().time() + self.body_s
        received, complete = 0, False

        async def counted_receive():
            nonlocal received, complete
            if complete:  # the body is in; the app now waits for a disconnect (a streamed answer: MCP)
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                if not upload:  # a stalled JSON body held one of the client's requests for as long as it liked
                    return {"type": "http.disconnect"}
                raise _Refused(408, f"An upload must arrive within {self.body_s:.0f} s.") from None
            if message["type"] != "http.request":
                return message
            complete = not message.get("more_body", False)
            body = message.get("body", b"")
            beyond = min(len(body), received + len(body) - reserved)  # what the Content-Length did not announce
            received += len(body)
            refusal = None
            if client is not None and beyond > 0 and self.clients.bytes.take(client, beyond) < 0 and upload:
                refusal = self.clients.refusal(self.clients.bytes.wait_s(client, 1), upload,
                                               self.clients.share_message())
            elif delimiters is not None:
                before = delimiters.count
                if delimiters.feed(body) > MAX_FILES_PER_UPLOAD + 1:
                    refusal = _Refused(413, f"An upload request may carry at most {MAX_FILES_PER_UPLOAD} files.")
                elif not self.cache.received(len(body) + (delimiters.count - before) * FILE_BYTES) \
                        and not await run_in_threadpool(self.cache.has_room):  # a sweep may make room
                    refusal = self._full()
            if refusal is not None:  # only uploads are refused here
                if not complete:
                    await self._drain(receive, client, deadline)
                raise refusal
            return message

        return counted_receive


STREAMS_AT_MOST = 10_000  # ~380 MB of the Space's memory at ~38 KB each


def stream_room() -> int:
    """Event streams the process can hold: half its file descriptors, once their soft limit is raised to the hard
    one (often 1024 against 1,048,576), the other half for everything else it opens; at most STREAMS_AT_MOST."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 2**20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(16, min(soft // 2, STREAMS_AT_MOST))


def _note_event(clients: PerClient, answer: bytes, client: str) -> None:
    """Notes the event a join's answer names as ``client``'s (PerClient.joined)."""
    try:
        event_id = json.loads(answer).get("event_id")
    except (ValueError, AttributeError):
        return
    if isinstance(event_id, str) and 0 < len(event_id) <= 100:
        clients.joined(event_id, client)


def _session_not_found(path: str) -> Response:
    """What Gradio answers a result stream of a session or event it does not know, without its route: it sends this,
    then raises, and two ~40-line tracebacks went to the log for every such stream (~7 KB)."""
    if path.startswith(CALL_STREAMS):
        return Response('event: error\ndata: "404: Not Found"\n\n', media_type="text/event-stream")
    message = UnexpectedErrorMessage(message="404: Not Found", session_not_found=True)
    return Response(f"data: {json.dumps(message.model_dump(), separators=(',', ':'))}\n\n",
                    media_type="text/event-stream")


def _unreadable_origin(scope) -> str | None:
    """Why Gradio could not build its URLs from the request's Host, X-Forwarded-Host or X-Gradio-Server header, if
    it could not: every page and API answer was then a 500, and a queued event failed before it ran and was never
    answered, its stream left open."""
    bad = "Bad Host, X-Forwarded-Host or X-Gradio-Server header"
    if any(name in ORIGIN_HEADERS and len(value) > ORIGIN_HEADER_BYTES for name, value in scope.get("headers", ())):
        return f"{bad}: longer than {ORIGIN_HEADER_BYTES} bytes"
    try:
        get_request_origin(Request(scope), "")
    except (InvalidURL, ValueError) as error:
        try:  # the URL includes the path: one with an ESC in it was blamed on the host headers
            get_request_origin(Request({**scope, "path": "/", "raw_path": b"/", "query_string": b""}), "")
        except (InvalidURL, ValueError):
            return f"{bad}: {type(error).__name__}: {str(error)[:200]}"
        return f"Bad request path or query: {type(error).__name__}: {str(error)[:200]}"
    return None


def _file_request(scope) -> dict:
    """A file= request as Gradio can answer it. Gradio splits a Range itself, and one it could not split
    ("bytes=1-2-3", "bytes=0-1,3-4", superscript digits) was a 500 and a traceback: it is dropped, as HTTP lets a
    server do, and the file goes whole. Answering a range, Gradio copies every request header into its answer:
    cookies and credentials are not passed to it (the Space has no login)."""
    headers = scope.get("headers", ())
    ranges = [value.strip() for name, value in headers if name == b"range"]
    if not ranges:
        return scope
    drop = {b"cookie", b"authorization"}
    if len(ranges) > 1 or not SPLITTABLE_RANGE.fullmatch(ranges[0]):
        drop.add(b"range")
    return {**scope, "headers": [(name, value) for name, value in headers if name not in drop]}


def _peer(scope) -> str:
    """The connection's address, as uvicorn has it (after X-Forwarded-For from a proxy it trusts)."""
    return str((scope.get("client") or ("",))[0])


def _speaking_for(scope, address: str) -> dict:
    """``scope`` with X-Forwarded-For naming ``address`` only (uvicorn has read the client's own from it)."""
    headers = [(name, value) for name, value in scope.get("headers", ()) if name != b"x-forwarded-for"]
    return {**scope, "headers": [*headers, (b"x-forwarded-for", address.encode("latin-1"))]}


def _content_length(scope) -> int:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() and len(value) <= 15 else 0


def _multipart_boundary(scope) -> bytes | None:
    """The boundary of a multipart body, as Starlette's and Gradio's parsers read it; None without one."""
    content_type, options = parse_options_header(Headers(scope=scope).get("content-type", ""))
    if not content_type.startswith(b"multipart/"):
        return None
    return options.get(b"boundary") or None
