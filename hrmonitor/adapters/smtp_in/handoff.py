"""Between a listener process and the daemon: one socket pair, framed messages.

With ``[listener] processes = N`` the SMTP sessions are served by N separate
processes (``app.worker_processes``), as Postfix's ``smtpd`` processes serve
them for its queue manager; the daemon keeps everything that needs the store,
the router or a global count. Per message a listener process sends the
envelope and the data it took (``SUBMIT``) and waits for the reply to give
at the dot (``REPLY``, the daemon's ``250`` after its group commit, or its
refusal). Per connection it asks the daemon's one set of connection limits
(``ADMIT``/``ADMITTED``, ``FREE`` when it ends), so that
``max_connections_per_client`` holds for the node, not per process. Its log
records go to the daemon's log (``LOG``); the daemon sends the tenants'
networks at start and after a reload (``TENANTS``).

The frames are those of ``adapters.frames``; the body of a ``SUBMIT`` is the message,
read on the daemon's side into one buffer of its size.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from hrmonitor.adapters.frames import DaemonSide, Frame, WorkerSide, frame
from hrmonitor.adapters.smtp_in.connections import ConnectionLimits
from hrmonitor.adapters.smtp_in.listener import AcceptFn, Tenant
from hrmonitor.adapters.smtp_in.session import FAILED_REPLY
from hrmonitor.core.delivery.envelope import Submission

log = logging.getLogger(__name__)

# listener process -> daemon
SUBMIT = ord("S")
ADMIT = ord("A")
FREE = ord("F")
# daemon -> listener process
REPLY = ord("R")
ADMITTED = ord("a")
TENANTS = ord("T")


def submission_meta(submission: Submission) -> bytes:
    return json.dumps(
        {
            "tenant": submission.tenant,
            "client_ip": submission.client_ip,
            "helo": submission.helo,
            "mail_from": submission.mail_from,
            "recipients": submission.recipients,
            "received_at": submission.received_at.isoformat(),
            "smtputf8": submission.smtputf8,
            "auth_user": submission.auth_user,
        },
    ).encode("utf-8")


def submission_from(meta: bytes, data: bytes) -> Submission:
    fields = json.loads(meta)
    auth_user = fields["auth_user"]
    return Submission(
        tenant=str(fields["tenant"]),
        client_ip=str(fields["client_ip"]),
        helo=str(fields["helo"]),
        mail_from=str(fields["mail_from"]),
        recipients=tuple(str(r) for r in fields["recipients"]),
        data=data,
        received_at=datetime.fromisoformat(fields["received_at"]),
        smtputf8=bool(fields["smtputf8"]),
        auth_user=None if auth_user is None else str(auth_user),
    )


def tenants_meta(tenants: Iterable[Tenant]) -> bytes:
    return json.dumps([[t.name, [str(n) for n in t.networks]] for t in tenants]).encode("utf-8")


def tenants_from(meta: bytes) -> tuple[Tenant, ...]:
    return tuple(
        Tenant(str(name), tuple(ipaddress.ip_network(n) for n in networks))
        for name, networks in json.loads(meta)
    )


# --- the listener process's end -------------------------------------------------------------


class ListenerEnd(WorkerSide):
    """The listener process's end: asks the daemon, and hears tenants and hang-up."""

    name = "listener process"

    def __init__(self, on_tenants: Callable[[tuple[Tenant, ...]], None]) -> None:
        super().__init__(max_body=0)
        self._on_tenants = on_tenants
        self._replies: dict[int, asyncio.Future[str]] = {}
        self._admissions: dict[int, tuple[str, asyncio.Future[str | None]]] = {}
        self._answered = asyncio.Event()  # set whenever no message waits for its reply
        self._answered.set()

    @property
    def in_flight(self) -> int:
        """Messages handed to the daemon and not yet answered."""
        return len(self._replies)

    async def answered(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) until every message handed over has its reply."""
        try:
            await asyncio.wait_for(self._answered.wait(), within)
        except TimeoutError:
            return False
        return True

    def dispatch(self, each: Frame) -> None:
        if each.kind == REPLY:
            future = self._replies.pop(each.request, None)
            if future is not None and not future.done():
                future.set_result(each.meta.decode("utf-8", errors="replace"))
            if not self._replies:
                self._answered.set()
        elif each.kind == ADMITTED:
            client, admitted = self._admissions.pop(each.request, ("", None))
            reason = each.meta.decode("utf-8", errors="replace") or None
            if admitted is None:
                return
            if admitted.done():  # the connection went while it waited: give the slot back
                if reason is None:
                    self.release(client)
                return
            admitted.set_result(reason)
        elif each.kind == TENANTS:
            self._on_tenants(tenants_from(each.meta))
        else:
            raise ValueError(f"unknown frame kind {each.kind}")

    def lost(self) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_result(FAILED_REPLY)
        self._replies.clear()
        self._answered.set()
        for _client, admitted in self._admissions.values():
            if not admitted.done():
                admitted.set_result("the daemon is gone")
        self._admissions.clear()

    async def accept(self, submission: Submission) -> str:
        """The daemon's reply to this message (its 250 after the commit, or a refusal)."""
        request = self.request_id()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        head = frame(SUBMIT, request, submission_meta(submission), len(submission.data))
        if not self.send(head, submission.data):
            return FAILED_REPLY
        self._replies[request] = future
        self._answered.clear()
        try:
            return await future
        finally:
            if self._replies.pop(request, None) is not None and not self._replies:
                self._answered.set()  # its session went first (cancelled)

    async def admit(self, client: str) -> str | None:
        """None if the daemon counted one more connection from ``client``, else why not."""
        request = self.request_id()
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        if not self.send(frame(ADMIT, request, client.encode("utf-8"))):
            return "the daemon is gone"
        self._admissions[request] = (client, future)
        return await future

    def release(self, client: str) -> None:
        self.send(frame(FREE, 0, client.encode("utf-8")))


# --- the daemon's end -----------------------------------------------------------------------


class DaemonEnd(DaemonSide):
    """The daemon's end of one listener process's pair.

    ``accept``: the relay's acceptance; ``limits``: the node's one set of
    connection limits, of which this end remembers what its process holds, to
    give it all back if the process goes.
    """

    def __init__(
        self,
        name: str,
        accept: AcceptFn,
        limits: ConnectionLimits,
        max_message_size: int,
        tenants: Sequence[Tenant],
    ) -> None:
        # The message, its Received: field and dot-unstuffing's slack.
        super().__init__(name, max_body=max_message_size + 64 * 1024)
        self._accept = accept
        self._limits = limits
        self._tenants = tuple(tenants)
        self._held: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    def opened(self) -> None:
        self.send_tenants(self._tenants)

    def send_tenants(self, tenants: Sequence[Tenant]) -> None:
        self._tenants = tuple(tenants)
        self.send(frame(TENANTS, 0, tenants_meta(self._tenants)))

    def dispatch_own(self, each: Frame) -> None:
        if each.kind == SUBMIT:
            submission = submission_from(each.meta, each.body)
            task = asyncio.ensure_future(self._answer(each.request, submission))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif each.kind == ADMIT:
            client = each.meta.decode("utf-8", errors="replace")
            reason = self._limits.admit(client)
            if reason is None:
                self._held[client] += 1
            self.send(frame(ADMITTED, each.request, (reason or "").encode("utf-8")))
        elif each.kind == FREE:
            self._free(each.meta.decode("utf-8", errors="replace"))
        else:
            raise ValueError(f"unknown frame kind {each.kind}")

    def _free(self, client: str) -> None:
        if self._held[client] <= 0:  # not held by this process: never count below zero
            return
        self._held[client] -= 1
        if self._held[client] == 0:
            del self._held[client]
        self._limits.release(client)

    async def _answer(self, request: int, submission: Submission) -> None:
        try:
            reply = await self._accept(submission)
        except Exception:
            log.exception("accepting a message from %s failed", submission.client_ip)
            reply = FAILED_REPLY
        self.send(frame(REPLY, request, reply.encode("utf-8")))

    def lost(self) -> None:
        for client, count in self._held.items():
            for _ in range(count):
                self._limits.release(client)
        self._held.clear()

    async def finish(self) -> None:
        """Wait for the messages this process handed over to be answered (stored)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
