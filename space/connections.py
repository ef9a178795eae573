"""How long a connection may take to send its request (its headers, then its body) and to read its answer.

uvicorn reads a request for as long as bytes keep coming, and writes an answer for as long as its client takes. A
client sending a header line, or a byte of a body the Space had already answered (a 413, a 429, a 404), every few
seconds, or one that stopped reading a large answer, held its connection, a file descriptor and (answers) megabytes
of socket buffers for as long as it liked, counted nowhere (the Space's stream limits count the streams it answers).
Here a request's headers must arrive within ``headers_s`` of its connection (or of the answer before it), its body
within ``body_s`` of its headers (and ANSWER_S more, for the app's own answer to a body too slow: RequestLimits'
408), and an answer must move within ``send_s`` whenever its buffers are full, or the connection is dropped, as
nginx does (``client_header_timeout``, ``client_body_timeout``, ``send_timeout``).
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn.config
from uvicorn.protocols.http.h11_impl import H11Protocol

ANSWER_S = 10.0  # beyond a body's deadline: for the app's own answer to it (a 408), before the connection goes


class RequestDeadlines(H11Protocol):
    """uvicorn's HTTP/1.1 protocol (h11), with a deadline on the part of the request it is waiting for, and on an
    answer its client has stopped reading."""

    headers_s, body_s, send_s = 30.0, 120.0, 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.waiting_for, self.deadline, self.sending = None, None, None
        super().connection_made(transport)
        self._watch()

    def pause_writing(self) -> None:
        """The answer's buffers are full: its client must read some of it within send_s."""
        super().pause_writing()
        if self.sending is None:
            self.sending = self.loop.call_later(self.send_s, self._drop)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_sending_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()  # a kept-alive connection now waits for its next request's headers

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._wait_for(None)  # the connection is the WebSocket protocol's now
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clocks()
        super().connection_lost(exc)

    def _stop_clocks(self) -> None:
        self._wait_for(None)
        self._stop_sending_clock()

    def _stop_sending_clock(self) -> None:
        if self.sending is not None:
            self.sending.cancel()
            self.sending = None

    def _watch(self) -> None:
        if self.transport.is_closing():
            self._wait_for(None)
        else:
            self._wait_for({h11.IDLE: "headers", h11.SEND_BODY: "body"}.get(self.conn.their_state))

    def _wait_for(self, part: str | None) -> None:
        if part == self.waiting_for:
            return  # the deadline runs from when this part was first awaited, however many bytes come
        if self.deadline is not None:
            self.deadline.cancel()
        self.waiting_for, self.deadline = part, None
        if part is not None:
            self.deadline = self.loop.call_later(
                self.headers_s if part == "headers" else self.body_s + ANSWER_S, self._drop)

    def _drop(self) -> None:
        """Ends the connection; connection_lost tells the app, as a client hanging up does. An answer still buffered
        is dropped with it (close() would wait for its client to read it)."""
        self._stop_clocks()
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()


def install(headers_s: float, body_s: float, send_s: float = 60.0) -> None:
    """Makes the uvicorn servers this process starts use RequestDeadlines (Gradio builds its uvicorn.Config with the
    default ``http="auto"``, and no way to pass another)."""
    RequestDeadlines.headers_s, RequestDeadlines.body_s, RequestDeadlines.send_s = headers_s, body_s, send_s
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:{RequestDeadlines.__name__}"
