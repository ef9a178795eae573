"""What a visitor's request may put in the Space's log: each kind of failure's traceback once, then one line.

Gradio, uvicorn and the MCP SDK log a request they cannot handle in full, from anyone, as fast as they can ask: a
bad X-Forwarded-Host header on GET /config was a 500 and ~7 KB of traceback, an unknown API name ~5 KB, an event
whose inputs were wrong echoed them whole (up to 64 KB), and an MCP message with an unknown method ~6 KB. So a
failure's traceback is written the first time it comes from a place (its kind and every frame's file and line: the
code decides how many there are, not the request), each text in it cut to TEXT characters; a repeat is one line, at
most ``per_minute`` of them a minute, and as many log records (the rest counted, and the count written). The Space
owner sees every kind of failure, whole, once, however many repeats come before it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from types import SimpleNamespace

from convhub.errors import one_line as convhub_one_line
from convhub.errors import printable
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

LINE = 300  # characters of a repeated failure's line, or of a log record
TEXT = 1000  # characters of each text in a first traceback (the message that echoed a 30 KB request)
KINDS = 1000  # places remembered; beyond them every failure is a line
V2_CALL = "/gradio_api/call/v2/"
GRADIO_USAGE = " Please click on 'view API' in the footer of the Gradio app to see usage."  # construct_args' ending


def one_line(text: str, limit: int = LINE) -> str:
    """``text`` on one printable line (convhub.errors.one_line: ESC, BEL, bidi marks from a request's path or name
    shown as U+FFFD), cut at ``limit`` characters."""
    text = convhub_one_line(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit:,} more characters)"


class _Budget:
    """At most ``per_minute`` entries a minute; the rest counted, and the count written when the next minute starts."""

    def __init__(self, what: str, per_minute: int, clock):
        self.what, self.per_minute, self.clock = what, per_minute, clock
        self.spent, self.skipped, self.minute = 0, 0, clock()

    def spend(self, stream) -> bool:
        now = self.clock()
        if now - self.minute >= 60:
            if self.skipped:
                print(f"... and {self.skipped} more {self.what} in the last {now - self.minute:.0f} s",
                      file=stream or sys.stderr, flush=True)
            self.spent, self.skipped, self.minute = 0, 0, now
        if self.spent >= self.per_minute:
            self.skipped += 1
            return False
        self.spent += 1
        return True


class FailureLog:
    def __init__(self, per_minute: int = 60, stream=None, clock=time.monotonic):
        self.stream = stream
        self.seen: set[tuple] = set()
        self.repeats = _Budget("repeated failure(s)", per_minute, clock)
        self.records = _Budget("log record(s)", per_minute, clock)  # a flood of failures must not hide warnings
        self.lock = threading.Lock()  # Gradio's queue fails events on worker threads, the server on its loop

    def failed(self, what: str, error: BaseException) -> None:
        """``what`` (a request, an event) failed with ``error``."""
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        place = (type(error).__name__, *((frame.filename, frame.lineno) for frame in frames))
        with self.lock:
            if place not in self.seen and len(self.seen) < KINDS:
                self.seen.add(place)  # written whatever the budget: each place once, and the code has so many
                parts = traceback.format_exception(type(error), error, error.__traceback__)
                text = "".join(part if len(part) <= TEXT else one_line(part, TEXT) + "\n" for part in parts)
                text = printable(text)  # a request's ESC...
                self._print(f"{one_line(what)} failed (written in full once; repeats are one line):\n{text.rstrip()}")
            elif self.repeats.spend(self.stream):
                self._print(f"{one_line(what)} failed: {one_line(f'{type(error).__name__}: {error}')} ({where})")

    def record(self, record: logging.LogRecord) -> bool:
        """A logging filter for the root's handlers: every record one line (a traceback's kind and message), within
        its own budget. Returns False where the budget is spent."""
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        record.msg, record.args = one_line(message), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        with self.lock:
            return self.records.spend(self.stream)

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)


class UnknownEndpoint(LookupError):
    """A call of an API endpoint, or an event, the Space does not have: the caller's mistake, a 404 (Gradio's lookup
    raised, and it was a 500)."""

    status = 404


class UnfitArguments(TypeError):
    """A v2 call whose arguments do not fit its endpoint (one missing, an unknown name): the caller's mistake, a 422."""

    status = 422


def _unknown_endpoint(api_name: str) -> UnknownEndpoint:
    return UnknownEndpoint(f"This Space has no API endpoint {one_line(f'/{api_name}', 100)}: GET /gradio_api/info "
                           "lists its endpoints.")


def callers_mistake(path: str, error: BaseException) -> UnknownEndpoint | UnfitArguments | None:
    """What Gradio's v2 call route raises for the caller's mistakes, before any lookup of ours runs: a KeyError of
    the name from its endpoint table, and construct_args' TypeError or ValueError for the arguments. Both were 500s
    and a line in the log; anything else it raises stays a failure."""
    if not path.startswith(V2_CALL):
        return None
    name = path.removeprefix(V2_CALL).removesuffix("/")
    if isinstance(error, KeyError) and error.args == (f"/{name}",):
        return _unknown_endpoint(name)
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, (TypeError, ValueError)) and frames and frames[-1].name == "construct_args":
        reason = one_line(str(error).removesuffix(GRADIO_USAGE), 200).rstrip(".")  # it sends API callers to the page
        return UnfitArguments(f"The arguments do not fit {one_line(f'/{name}', 100)}: {reason}. GET /gradio_api/info "
                              "lists its parameters.")
    return None


class Failures:
    """ASGI middleware: a request the app fails with an exception gets a JSON 500 naming it (an answer already begun
    is ended), and the log gets FailureLog's entry instead of uvicorn's traceback. The Space puts one around Gradio's
    routes (where the answer can still be ours) and one around the whole server (for what Gradio's own outer
    middleware raises: its CORS read a Host header that HTTP/1.0 need not send)."""

    def __init__(self, app, log: FailureLog):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = ended = False

        async def watched_send(message):
            nonlocal started, ended
            await send(message)  # an outer middleware's send may raise: then nothing was sent
            started = started or message["type"] == "http.response.start"
            ended = ended or (message["type"] == "http.response.body" and not message.get("more_body", False))

        try:
            await self.app(scope, receive, watched_send)
        except ClientDisconnect:
            return  # the client went away mid-body: nobody to answer
        except Exception as error:  # noqa: BLE001 - whatever Gradio raises for a request it could not handle
            path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
            mistake = error if isinstance(error, UnknownEndpoint) else callers_mistake(path, error)
            if mistake is not None:
                if not started:
                    await JSONResponse({"detail": str(mistake), "error": str(mistake)}, status_code=mistake.status)(
                        scope, receive, send)
                return
            self.log.failed(f"{scope.get('method')} {scope.get('path')}", error)
            if not started:  # if this send fails too, its error goes on to the outer Failures
                message = f"The Space could not handle this request: {one_line(f'{type(error).__name__}: {error}')}"
                await JSONResponse({"detail": message, "error": message}, status_code=500)(scope, receive, send)
            elif not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def install(log: FailureLog) -> None:
    """Gradio's queue and routes print an event's traceback where it fails (traceback.print_exc): now ``log``'s
    entry. Records logged through ``logging`` (the MCP SDK's) are made one line each, within its budget."""
    import gradio.queueing
    import gradio.route_utils
    import gradio.routes

    def print_exc(*_, **__) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            log.failed("an event", error)

    for module in (gradio.queueing, gradio.routes, gradio.route_utils):  # each uses traceback for print_exc alone
        module.traceback = SimpleNamespace(print_exc=print_exc)
    gradio.route_utils.get_fn = _known(gradio.route_utils.get_fn)  # the routes and the queue call it from there
    logging.basicConfig()  # the handler logging.warning would add on its first record, added now to filter it
    for handler in logging.getLogger().handlers:
        handler.addFilter(log.record)
    # uvicorn's loggers have handlers of their own (they do not reach the root's): an `Upgrade: foo` header or a broken
    # request line was a warning each, from anyone. Filtered where they are logged, before launch: its logging config
    # replaces their handlers, not their filters, and the server answers before launch returns.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).addFilter(log.record)


def _known(get_fn):
    """Gradio's lookup of a request's function, raising UnknownEndpoint for a name or number it does not have."""
    from gradio.route_utils import FnIndexInferError

    def get_known_fn(blocks, api_name, body):
        try:
            return get_fn(blocks, api_name, body)
        except FnIndexInferError:
            raise _unknown_endpoint(api_name) from None
        except KeyError:  # fns[body.fn_index]
            raise UnknownEndpoint(f"This Space has no event number {one_line(body.fn_index, 100)}: GET /config "
                                  "lists its events.") from None

    return get_known_fn

