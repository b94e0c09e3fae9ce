"""Between the daemon and a delivery process: SMTP transactions run elsewhere.

With ``[delivery] processes = N`` the outbound SMTP transactions (aiosmtplib's
client, its sessions kept open per source IP and host) run in N separate
processes, as Postfix's ``smtp`` processes run them for its queue manager.
The daemon keeps every decision: what is due, which source IP, which host,
per-destination concurrency, what a reply means. Per transaction it sends
one ``SEND`` (the envelope as meta, the message as body) and gets one
``RESULT``: the same :class:`Sent` or :class:`Failed` a :class:`Connections`
in the daemon would have returned, or ``bind`` for a source IP that cannot be
bound (raised as :class:`BindError`, as there). A transaction the daemon gives
up on (its ``send_timeout``) is cancelled there too (``CANCEL``).

A transaction goes to the process chosen by its (source IP, host), so the
sessions one destination reuses live in one process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from hrmonitor.adapters.frames import DaemonSide, Frame, WorkerSide, frame
from hrmonitor.adapters.smtp_out import Connections, Failed, Reply, Sent
from hrmonitor.adapters.smtp_out.data import Body
from hrmonitor.errors import BindError

log = logging.getLogger(__name__)

# daemon -> delivery process
SEND = ord("S")
CANCEL = ord("C")
# delivery process -> daemon
RESULT = ord("R")


def result_meta(outcome: Sent | Failed | BindError) -> bytes:
    doc: dict[str, Any]
    if isinstance(outcome, BindError):
        doc = {"bind": str(outcome)}
    elif isinstance(outcome, Sent):
        doc = {
            "host": outcome.host,
            "source_ip": outcome.source_ip,
            "replies": [[rcpt, r.code, r.text] for rcpt, r in outcome.replies.items()],
            "tls": outcome.tls,
        }
    else:
        reply = outcome.reply
        doc = {
            "host": outcome.host,
            "source_ip": outcome.source_ip,
            "reason": outcome.reason,
            "reply": None if reply is None else [reply.code, reply.text],
        }
    return json.dumps(doc).encode("utf-8")


def result_from(meta: bytes) -> Sent | Failed | BindError:
    doc = json.loads(meta)
    if "bind" in doc:
        return BindError(str(doc["bind"]))
    host, source_ip = str(doc["host"]), str(doc["source_ip"])
    if "replies" in doc:
        replies = {str(rcpt): Reply(int(code), str(text)) for rcpt, code, text in doc["replies"]}
        return Sent(host, source_ip, replies, bool(doc["tls"]))
    reply = doc["reply"]
    return Failed(
        host,
        source_ip,
        str(doc["reason"]),
        None if reply is None else Reply(int(reply[0]), str(reply[1])),
    )


# --- the daemon's end -----------------------------------------------------------------------


class DaemonEnd(DaemonSide):
    """The daemon's end of one delivery process's pair: a :class:`Sender` over it."""

    def __init__(self, name: str) -> None:
        super().__init__(name, max_body=0)
        self._results: dict[int, asyncio.Future[Sent | Failed | BindError]] = {}
        # A body read from the store in slices is written as it is read: no other
        # frame may go between its pieces.
        self._writing = asyncio.Lock()

    def dispatch_own(self, each: Frame) -> None:
        if each.kind != RESULT:
            raise ValueError(f"unknown frame kind {each.kind}")
        future = self._results.pop(each.request, None)
        if future is not None and not future.done():
            future.set_result(result_from(each.meta))

    def lost(self) -> None:
        for future in self._results.values():
            if not future.done():
                future.set_result(Failed("", "", "the delivery process went away"))
        self._results.clear()

    async def send_transaction(
        self,
        *,
        source_ip: str,
        host: str,
        mail_from: str,
        recipients: Sequence[str],
        body: Body | bytes,
        smtputf8: bool = False,
        port: int | None = None,
    ) -> Sent | Failed:
        """One transaction in the delivery process; raises BindError as Connections does."""
        if isinstance(body, bytes):
            body = Body.of(body)
        request = self.request_id()
        meta = json.dumps(
            {
                "source_ip": source_ip,
                "host": host,
                "mail_from": mail_from,
                "recipients": list(recipients),
                "smtputf8": smtputf8,
                "port": port,
            }
        ).encode("utf-8")
        future: asyncio.Future[Sent | Failed | BindError] = (
            asyncio.get_running_loop().create_future()
        )
        self._results[request] = future
        try:
            if not await self._write(frame(SEND, request, meta, body.size), body):
                self._results.pop(request, None)
                return Failed(host, source_ip, "the delivery process is not running")
            outcome = await future
        except asyncio.CancelledError:  # the runner's send_timeout: stop it there too
            if self._results.pop(request, None) is not None:
                self.send(frame(CANCEL, request))
            raise
        if isinstance(outcome, BindError):
            raise outcome
        return outcome

    async def _write(self, head: bytes, body: Body) -> bool:
        async with self._writing:
            if not self.send(head):
                return False
            written = 0
            try:
                async for piece in body.read():
                    if not self.send(piece):
                        return False
                    written += len(piece)
            except BaseException:
                # Part of a body is on the pair: the next frame would be read at the
                # wrong offset. Close it; the supervisor starts the process again.
                self.close()
                raise
            if written != body.size:
                self.close()
                raise ValueError(f"the message read {written} bytes, not {body.size}")
            return True


# --- the delivery process's end -------------------------------------------------------------


class DeliveryEnd(WorkerSide):
    """The delivery process's end: runs each ``SEND`` through its own :class:`Connections`."""

    name = "delivery process"

    def __init__(self, connections: Connections, max_message_size: int) -> None:
        super().__init__(max_body=max_message_size)
        self._connections = connections
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def dispatch(self, each: Frame) -> None:
        if each.kind == SEND:
            request = each.request
            task = asyncio.ensure_future(self._send(request, json.loads(each.meta), each.body))
            self._tasks[request] = task
            task.add_done_callback(functools.partial(self._done, request))
        elif each.kind == CANCEL:
            running = self._tasks.get(each.request)
            if running is not None:
                running.cancel()
        else:
            raise ValueError(f"unknown frame kind {each.kind}")

    def _done(self, request: int, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(request, None)

    async def _send(self, request: int, meta: dict[str, Any], data: bytes) -> None:
        outcome: Sent | Failed | BindError
        try:
            outcome = await self._connections.send(
                source_ip=str(meta["source_ip"]),
                host=str(meta["host"]),
                mail_from=str(meta["mail_from"]),
                recipients=[str(r) for r in meta["recipients"]],
                body=data,  # Body.of there: its size and 8-bit-ness from the bytes
                smtputf8=bool(meta["smtputf8"]),
                port=None if meta["port"] is None else int(meta["port"]),
            )
        except BindError as error:
            outcome = error
        except asyncio.CancelledError:
            return  # the daemon gave up on it and expects no result
        except Exception as error:
            log.exception("delivery process: a transaction failed")
            outcome = Failed(str(meta["host"]), str(meta["source_ip"]), f"{error}")
        self.send(frame(RESULT, request, result_meta(outcome)))

    def lost(self) -> None:
        for task in self._tasks.values():
            task.cancel()
