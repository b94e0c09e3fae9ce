"""Outbound SMTP (aiosmtplib): one transaction from a given source IP to a given MX host.

Every connection is bound to the source IP the runner chose for this attempt
(``source_address=(ip, 0)``). A bind failure is never papered over by letting
the kernel choose another address: it raises :class:`BindError` about that IP.

STARTTLS is opportunistic: used when offered, certificates not verified (RFC
7435; the peer's name is not authenticated by plain MX delivery anyway), and a
failed handshake is retried once in plain text rather than deferring the mail.

Sessions are reused for further messages to the same (source IP, host, port)
while they are fresh; a reused session that turns out to be dead before the
first reply is replaced transparently, once.

Outcomes are values: :class:`Sent` carries a reply per recipient,
:class:`Failed` says why the whole transaction failed and which reply, if any,
the remote side gave.

DATA is written a piece of whole lines at a time, each dot-stuffed on its
own, waiting for the socket to drain between pieces, and a stored message is
read from the queue a slice at a time as it goes out (``smtp_out.data``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import aiosmtplib

from hrmonitor.adapters.smtp_out.data import Body, DataPieces, data_pieces, send_data
from hrmonitor.errors import BindError

__all__ = [
    "Body",
    "Connections",
    "DataPieces",
    "Failed",
    "OutboundSettings",
    "Reply",
    "Sent",
    "check_bindable",
    "data_pieces",
]

log = logging.getLogger(__name__)

_BIND_ERRNOS = frozenset({errno.EADDRNOTAVAIL})


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def line(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass(frozen=True, slots=True)
class Sent:
    """The transaction ran to its end; each recipient has its final reply (RCPT or DATA)."""

    host: str
    source_ip: str
    replies: Mapping[str, Reply]
    tls: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    """The transaction failed as a whole: connection trouble, or a refusal before DATA."""

    host: str
    source_ip: str
    reason: str
    reply: Reply | None = None  # the remote reply, when there was one

    @property
    def permanent(self) -> bool:
        return self.reply is not None and 500 <= self.reply.code < 600


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    port: int = 25
    helo_name: str = "localhost"
    connect_timeout: float = 30.0
    command_timeout: float = 60.0
    max_messages_per_connection: int = 100
    idle_seconds: float = 10.0


def check_bindable(ips: Iterable[str]) -> dict[str, str | None]:
    """For each IP: None if a socket can bind it now, else the error text (for start-up checks)."""
    result: dict[str, str | None] = {}
    for ip in ips:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((ip, 0))
        except OSError as exc:
            result[ip] = f"{exc.strerror or exc} (errno {exc.errno})"
        else:
            result[ip] = None
    return result


def _bind_errno(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _BIND_ERRNOS:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(slots=True)
class _Session:
    smtp: aiosmtplib.SMTP
    tls: bool
    used: int = 0
    idle_since: float = field(default_factory=time.monotonic)


class Connections:
    """Opens, reuses and closes outbound sessions; one transaction per :meth:`send`."""

    def __init__(self, settings: OutboundSettings) -> None:
        self.settings = settings
        self._idle: dict[tuple[str, str, int], list[_Session]] = {}
        self._no_tls: set[str] = set()
        self._quitting: set[asyncio.Task[None]] = set()
        self._pruning: asyncio.TimerHandle | None = None

    def _quit_later(self, smtp: aiosmtplib.SMTP) -> None:
        task = asyncio.ensure_future(_quit(smtp))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    async def _connect(self, source_ip: str, host: str, port: int) -> _Session:
        tls_ok = host not in self._no_tls
        smtp = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            source_address=(source_ip, 0),
            local_hostname=self.settings.helo_name,
            timeout=self.settings.command_timeout,
            start_tls=False,
            validate_certs=False,
        )
        try:
            await smtp.connect(timeout=self.settings.connect_timeout)
        except aiosmtplib.SMTPException as exc:
            smtp.close()
            if _bind_errno(exc) is not None:
                raise BindError(f"cannot bind source IP {source_ip}: {exc}") from exc
            raise
        await smtp.ehlo()
        if tls_ok and smtp.supports_extension("starttls"):
            try:
                await smtp.starttls(validate_certs=False)
                return _Session(smtp, tls=True)
            except (ssl.SSLError, aiosmtplib.SMTPException, OSError) as exc:
                log.info("STARTTLS with %s failed (%s); retrying in plain text", host, exc)
                smtp.close()
                self._no_tls.add(host)
                return await self._connect(source_ip, host, port)
        return _Session(smtp, tls=False)

    def _checkout(self, key: tuple[str, str, int]) -> _Session | None:
        sessions = self._idle.get(key)
        now = time.monotonic()
        while sessions:
            session = sessions.pop()
            if session.smtp.is_connected and now - session.idle_since < self.settings.idle_seconds:
                return session
            session.smtp.close()
        return None

    def _checkin(self, key: tuple[str, str, int], session: _Session) -> None:
        session.used += 1
        if (
            session.used >= self.settings.max_messages_per_connection
            or not session.smtp.is_connected
        ):
            self._quit_later(session.smtp)
            return
        session.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(session)
        self._prune_later()

    def _prune_later(self) -> None:
        """Run :meth:`prune` ``idle_seconds`` from now, and again while sessions idle.

        A session kept for reuse is closed (QUIT) once idle that long, as Postfix's
        connection cache closes its sessions after ``smtp_connection_cache_time_limit``:
        a checkout only ever looked at its own destination's sessions, so one that was
        never sent to again held its connection (and a file descriptor, and a slot at
        the remote MX) until the remote side timed it out. A session closes between
        ``idle_seconds`` and twice that after its last use.
        """
        if self._pruning is None:
            loop = asyncio.get_running_loop()
            self._pruning = loop.call_later(self.settings.idle_seconds, self._prune_tick)

    def _prune_tick(self) -> None:
        self._pruning = None
        self.prune()
        if self._idle:
            self._prune_later()

    async def send(
        self,
        *,
        source_ip: str,
        host: str,
        mail_from: str,
        recipients: Iterable[str],
        body: Body | bytes,
        smtputf8: bool = False,
        port: int | None = None,
    ) -> Sent | Failed:
        """One SMTP transaction. Raises BindError when ``source_ip`` cannot be bound.

        ``body``: the message, or a :class:`Body` read as DATA goes out; an error reading
        it ends the transaction without the terminator and is raised.
        """
        if isinstance(body, bytes):
            body = Body.of(body)
        port = self.settings.port if port is None else port
        key = (source_ip, host, port)
        rcpts = list(recipients)
        session = self._checkout(key)
        if session is not None:
            outcome = await self._transaction(
                session, source_ip, host, mail_from, rcpts, body, smtputf8
            )
            if not (
                isinstance(outcome, Failed) and outcome.reply is None and outcome.reason == "stale"
            ):
                self._after(key, session, outcome)
                return outcome
        try:
            session = await self._connect(source_ip, host, port)
        except BindError:
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            # A refusal in the greeting (421/554) says nothing about this message:
            # the next MX or a later attempt may take it, so it never bounces it.
            return Failed(host, source_ip, f"connect: {exc}")
        outcome = await self._transaction(
            session, source_ip, host, mail_from, rcpts, body, smtputf8
        )
        if isinstance(outcome, Failed) and outcome.reason == "stale":
            outcome = Failed(host, source_ip, "connection lost before MAIL was answered")
        self._after(key, session, outcome)
        return outcome

    def _after(self, key: tuple[str, str, int], session: _Session, outcome: Sent | Failed) -> None:
        if isinstance(outcome, Sent) or (outcome.reply is not None and session.smtp.is_connected):
            self._checkin(key, session)
        else:
            session.smtp.close()

    async def _transaction(
        self,
        session: _Session,
        source_ip: str,
        host: str,
        mail_from: str,
        rcpts: list[str],
        body: Body,
        smtputf8: bool,
    ) -> Sent | Failed:
        smtp = session.smtp
        options: list[str] = []
        if smtputf8 and smtp.supports_extension("smtputf8"):
            options.append("SMTPUTF8")
        if body.eight_bit and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if smtp.supports_extension("size"):
            options.append(f"SIZE={body.size}")
        encoding = "utf-8" if smtputf8 else "ascii"
        try:
            try:
                await smtp.mail(mail_from, options=options, encoding=encoding)
            except aiosmtplib.SMTPServerDisconnected:
                return Failed(host, source_ip, "stale") if session.used else _lost(host, source_ip)
            replies: dict[str, Reply] = {}
            accepted: list[str] = []
            for rcpt in rcpts:
                try:
                    response = await smtp.rcpt(rcpt, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    replies[rcpt] = Reply(exc.code, exc.message)
                else:
                    accepted.append(rcpt)
                    replies[rcpt] = Reply(response.code, response.message)
            if not accepted:
                await _reset(smtp)
                return Sent(host, source_ip, replies, session.tls)
            try:
                response = await send_data(smtp, body)
                data_reply = Reply(response.code, response.message)
            except aiosmtplib.SMTPDataError as exc:
                data_reply = Reply(exc.code, exc.message)
                await _reset(smtp)
            for rcpt in accepted:
                replies[rcpt] = data_reply
            return Sent(host, source_ip, replies, session.tls)
        except aiosmtplib.SMTPSenderRefused as exc:
            await _reset(smtp)
            return Failed(host, source_ip, "MAIL FROM refused", Reply(exc.code, exc.message))
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            return Failed(host, source_ip, "unexpected reply", Reply(exc.code, exc.message))
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            smtp.close()
            return Failed(host, source_ip, f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
            self._pruning = None
        sessions = [s for group in self._idle.values() for s in group]
        self._idle.clear()
        await asyncio.gather(*(_quit(s.smtp) for s in sessions), return_exceptions=True)
        await asyncio.gather(*self._quitting, return_exceptions=True)

    def prune(self) -> None:
        """Close sessions idle for longer than ``idle_seconds`` (and forget destinations
        left without sessions); runs on its own while sessions idle (:meth:`_prune_later`)."""
        now = time.monotonic()
        for key, sessions in list(self._idle.items()):
            keep = []
            for session in sessions:
                if now - session.idle_since < self.settings.idle_seconds:
                    keep.append(session)
                else:
                    self._quit_later(session.smtp)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]


def _lost(host: str, source_ip: str) -> Failed:
    return Failed(host, source_ip, "connection lost")


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()
