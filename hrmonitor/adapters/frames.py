"""Framed messages between the daemon and its worker processes, over a socket pair.

Metas are JSON with every non-ASCII character escaped: what a client sent may hold
lone surrogates (undecodable bytes, kept by ``surrogateescape``), which UTF-8 cannot
encode but a ``\\udcff`` escape carries through unchanged.

A frame is a fixed 13-byte prefix (kind, request id, length of the JSON
``meta``, length of the raw ``body``), the meta, then the body. A body (a
message) is read into one buffer of its announced size and handed on without
a copy (issue 13: a message is held once per process). A frame over the
reader's limits raises :class:`HandoffError`: the pair is then closed, never
read on at a guessed offset (fail closed).

Used by ``adapters.smtp_in.handoff`` (listener processes) and
``adapters.smtp_out.handoff`` (delivery processes).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger(__name__)

PREFIX = struct.Struct("!BIII")  # kind, request id, meta length, body length
MAX_META = 1 << 20  # envelopes of max_recipients addresses fit many times over


class HandoffError(Exception):
    """The other end sent what no frame may hold (the pair is closed)."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    request: int
    meta: bytes
    body: bytes


def frame(kind: int, request: int = 0, meta: bytes = b"", body_size: int = 0) -> bytes:
    """The prefix and meta of one frame; its ``body_size`` bytes of body are written after."""
    return PREFIX.pack(kind, request, len(meta), body_size) + meta


class FrameReader:
    """Frames from a byte stream fed in pieces of any size.

    A body goes into a buffer allocated once at its announced size, from which
    ``getvalue()`` hands out the bytes object itself, not a copy.
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._head = bytearray()
        self._prefix: tuple[int, int, int, int] | None = None
        self._meta = b""
        self._body: io.BytesIO | None = None
        self._body_left = 0

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        view = memoryview(data)
        while view:
            if self._body is not None:
                take = view[: self._body_left]
                self._body.write(take)
                self._body_left -= len(take)
                view = view[len(take) :]
                if self._body_left == 0:
                    frames.append(self._finish(self._body.getvalue()))
                continue
            view = self._read_head(view, frames)
        return frames

    def _read_head(self, view: memoryview, frames: list[Frame]) -> memoryview:
        if self._prefix is None:
            need = PREFIX.size - len(self._head)
            self._head += view[:need]
            view = view[need:]
            if len(self._head) < PREFIX.size:
                return view
            prefix = PREFIX.unpack(self._head)
            self._head.clear()
            _kind, _request, meta_len, body_len = prefix
            if meta_len > MAX_META or body_len > self.max_body:
                raise HandoffError(f"a frame of {meta_len} + {body_len} bytes is over the limit")
            self._prefix = prefix
        _kind, _request, meta_len, body_len = self._prefix
        need = meta_len - len(self._head)
        self._head += view[:need]
        view = view[need:]
        if len(self._head) < meta_len:
            return view
        self._meta = bytes(self._head)
        self._head.clear()
        if body_len == 0:
            frames.append(self._finish(b""))
        else:
            body = io.BytesIO()
            body.seek(body_len - 1)
            body.write(b"\0")  # one allocation of the final size
            body.seek(0)
            self._body, self._body_left = body, body_len
        return view

    def _finish(self, body: bytes) -> Frame:
        assert self._prefix is not None
        kind, request, _meta_len, _body_len = self._prefix
        done = Frame(kind, request, self._meta, body)
        self._prefix, self._meta, self._body = None, b"", None
        return done


def log_meta(record: logging.LogRecord, text: str) -> bytes:
    """A worker's log record as a frame's meta: level, logger name, the formatted text."""
    return json.dumps([record.levelno, record.name, text]).encode("utf-8")


def log_from(meta: bytes) -> None:
    """Write a worker's log record with the daemon's own handlers (its file, node, format)."""
    level, name, text = json.loads(meta)
    logging.getLogger(str(name)).log(int(level), "%s", text)


class ToDaemon(logging.Handler):
    """A worker process's log records, sent to the daemon to write (``send``)."""

    def __init__(self, send: Callable[[logging.LogRecord, str], None]) -> None:
        super().__init__()
        self._send = send
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(record, self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


# Frames every worker sends: its log records, and "ready" once it serves.
LOG = ord("L")
READY = ord("Y")


class PairEnd(asyncio.Protocol):
    """One end of a worker's socket pair: frames in (:meth:`dispatch`), frames out (:meth:`send`).

    A frame this end cannot read (over its limits, or a meta of the wrong shape) closes
    the pair. :meth:`lost` runs once when the pair is gone, whichever end closed it.
    """

    name = "worker pair"

    def __init__(self, max_body: int) -> None:
        self._reader = FrameReader(max_body)
        self._transport: asyncio.Transport | None = None
        self._next = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def up(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.opened()

    def opened(self) -> None:
        """The pair is up (a daemon's end may send its first frames now)."""

    def data_received(self, data: bytes) -> None:
        try:
            for each in self._reader.feed(data):
                self.dispatch(each)
        except (HandoffError, ValueError, KeyError, TypeError, IndexError) as error:
            log.error("%s: %s; closing the pair", self.name, error)
            self.close()

    def dispatch(self, each: Frame) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.lost()
        if not self.closed.done():
            self.closed.set_result(None)

    def lost(self) -> None:
        """The pair is gone: fail or give back what waited on the other end."""

    def request_id(self) -> int:
        self._next = (self._next + 1) & 0xFFFFFFFF
        return self._next

    def send(self, head: bytes, body: bytes = b"") -> bool:
        """Write a frame (its body, if any, right after); False if the pair is gone."""
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.write(head)
        if body:
            self._transport.write(body)
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class WorkerSide(PairEnd):
    """The end in a worker process."""

    def ready(self) -> None:
        self.send(frame(READY))

    def log(self, record: logging.LogRecord, text: str) -> None:
        self.send(frame(LOG, 0, log_meta(record, text)))


class DaemonSide(PairEnd):
    """The end in the daemon: ``ready`` once its worker serves; the worker's log written."""

    def __init__(self, name: str, max_body: int) -> None:
        super().__init__(max_body)
        self.name = name
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def dispatch(self, each: Frame) -> None:
        if each.kind == LOG:
            log_from(each.meta)
        elif each.kind == READY:
            if not self.ready.done():
                self.ready.set_result(None)
        else:
            self.dispatch_own(each)

    def dispatch_own(self, each: Frame) -> None:
        raise ValueError(f"unknown frame kind {each.kind}")

    async def finish(self) -> None:
        """Wait for what this end still does for its worker (nothing, by default)."""
