"""The SMTP listener (aiosmtpd): takes mail from tenants, refuses everyone else.

Relaying is allowed for a client whose address is in a tenant's networks,
or that authenticated (SMTP AUTH, only after STARTTLS) as one of a tenant's
users. Everyone else gets ``550 5.7.1 relaying denied`` at RCPT, so no
message from them ever reaches DATA and nothing of theirs is stored.

Envelope addresses are judged by :mod:`hrmonitor.core.delivery.envelope` on the raw
argument before aiosmtpd parses it (its parser silently drops source routes).
The acknowledgement of DATA is whatever the ``accept`` callback answers: the
relay service answers ``250`` only after the queue committed the message.

Bare LF and NUL in DATA are stored as received (aiosmtpd reads DATA lines up
to CRLF, so a bare LF stays inside a line); a "line" longer than
``max_line_length`` gets ``500 5.5.2`` and nothing is stored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any, AnyStr, ClassVar

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from hrmonitor.core.delivery.envelope import (
    RELAY_DENIED,
    Mailbox,
    NullPath,
    Refusal,
    Submission,
    parse_path,
    split_path,
)
from hrmonitor.core.model import Clock
from hrmonitor.errors import BindError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AcceptFn = Callable[[Submission], Awaitable[str]]
# (user, password) -> the tenant the user sends for, or None to refuse the login.
AuthenticateFn = Callable[[str, str], str | None]

TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
_AIOSMTPD_TOO_BIG = ("552 Error: Too much mail data", "552 Error: message size exceeds")


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    networks: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    host: str
    port: int
    hostname: str
    tenants: tuple[Tenant, ...]
    max_message_size: int = 35_000_000
    max_recipients: int = 1000
    max_line_length: int = 998
    tls_cert: str = ""
    tls_key: str = ""
    timeout: float = 300.0  # idle seconds before aiosmtpd drops a silent client
    # SO_REUSEPORT: several listener processes may share host:port (the kernel spreads
    # connections); each then keeps its own sending-limit counters.
    reuse_port: bool = False


def tenant_for(tenants: Sequence[Tenant], client_ip: str) -> str | None:
    """The tenant whose networks contain ``client_ip`` (first match), or None."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for tenant in tenants:
        if any(address in network for network in tenant.networks):
            return tenant.name
    return None


class _RelaySMTP(SMTP):
    """aiosmtpd's protocol with the relay's address policy in front of MAIL and RCPT."""

    _command_names: ClassVar[list[str] | None] = None

    def __dir__(self) -> list[str]:
        # aiosmtpd builds its command and AUTH tables from dir(self) and getattr on every
        # new connection (about a millisecond each); only smtp_*/auth_* names matter to
        # it, and they are fixed per class, so list just those, once.
        cls = type(self)
        if cls._command_names is None:
            names = object.__dir__(self)
            cls._command_names = [n for n in names if n.startswith(("smtp_", "auth_"))]
        return list(cls._command_names)

    def __init__(self, listener: Listener, **kwargs: Any) -> None:
        # aiosmtpd sizes its StreamReader from this attribute inside __init__.
        self.line_length_limit = listener.settings.max_line_length + 2
        self._listener = listener
        super().__init__(_Handler(listener), **kwargs)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith(_AIOSMTPD_TOO_BIG):
            await super().push(TOO_BIG)
        elif isinstance(status, str) and status.startswith("500 Line too long"):
            limit = self._listener.settings.max_line_length
            await super().push(f"500 5.5.2 Line too long (limit {limit})")
        else:
            await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd reads DATA a line at a time (about 50 awaits for a 2 KB message);
        # this reads it in chunks and applies the same rules to the whole: a "line"
        # ends at CRLF (a bare LF stays inside it), the size limit gives 552 5.3.4
        # and an over-long line 500 5.5.2, both only after the terminating dot.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.data_size_limit or 0
        data = bytearray(b"\r\n")  # a virtual CRLF before the first line finds ".\r\n" there
        size = 0
        too_big = False
        while True:
            chunk = await self._reader.read(65536)
            if not chunk:  # the client went away mid-DATA: nothing to store or answer
                return
            self._reset_timeout()  # an idle timeout, not a limit on the whole transfer
            size += len(chunk)
            data += chunk
            end = data.find(b"\r\n.\r\n", max(0, len(data) - len(chunk) - 4))
            if end >= 0:
                break
            if limit and size > limit:
                too_big = True
                del data[: len(data) - 4]  # keep just enough to see the terminator
        if end + 5 != len(data):
            # Commands sent after the dot without waiting for our reply: put them back
            # in front of whatever the reader still holds, for the command loop.
            self._reader._buffer[:0] = data[end + 5 :]  # type: ignore[attr-defined]
        if too_big or (limit and end > limit):  # ``end``: the message's size without the dot
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(TOO_BIG)
            return
        body = bytes(data[2 : end + 2])
        longest = max(map(len, body.split(b"\r\n"))) if body else 0
        if longest + 2 > self.line_length_limit:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            limit_text = self._listener.settings.max_line_length
            await self.push(f"500 5.5.2 Line too long (limit {limit_text})")
            return
        if body.startswith(b"."):
            body = body[1:]
        body = body.replace(b"\r\n.", b"\r\n")
        envelope.content = body
        envelope.original_content = body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's version runs the email package's header parser (and defines a
        # class) for every MAIL and RCPT; our MAIL/RCPT have judged the path already
        # with core.envelope, so splitting it off is all that is left to do.
        if not arg:
            return "", ""
        split = split_path(arg)
        if isinstance(split, Refusal):
            return None, None
        path, params = split
        return (path or "<>"), params  # aiosmtpd reads "" as "no address": keep "<>"

    def relay_tenant(self) -> str | None:
        session = self.session
        if session is None or session.peer is None:
            return None
        if session.authenticated and isinstance(session.auth_data, tuple):
            return str(session.auth_data[0])
        return self._listener.tenant_of(str(session.peer[0]))

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg is not None and arg[:5].upper() == "FROM:":
            verdict = self._judge(arg[5:], allow_null=True)
            if isinstance(verdict, Refusal):
                await self.push(verdict.reply)
                return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.mail_from is not None and arg is not None:
            if self.relay_tenant() is None:
                log.info("relaying denied for %s", self.session.peer if self.session else "?")
                await self.push(RELAY_DENIED.reply)
                return
            if arg[:3].upper() == "TO:":
                verdict = self._judge(arg[3:], allow_null=False)
                if isinstance(verdict, Refusal):
                    await self.push(verdict.reply)
                    return
            if len(envelope.rcpt_tos) >= self._listener.settings.max_recipients:
                await self.push("452 4.5.3 Too many recipients")
                return
        await super().smtp_RCPT(arg)

    def _judge(self, arg: str, *, allow_null: bool) -> Mailbox | NullPath | Refusal:
        split = split_path(arg)
        if isinstance(split, Refusal):
            return split
        path, params = split
        utf8 = "SMTPUTF8" in params.upper().split()
        envelope = self.envelope
        if not allow_null and envelope is not None:
            utf8 = utf8 or bool(envelope.smtp_utf8)
        return parse_path(path, utf8=utf8, allow_null=allow_null)


class _Handler:
    def __init__(self, listener: Listener) -> None:
        self._listener = listener

    def __dir__(self) -> list[str]:
        # aiosmtpd looks for auth_*/handle_* hooks in dir(handler) and getattr's every
        # name on each new connection; the object's ~25 dunder names are just overhead.
        return ["handle_DATA"]

    async def handle_DATA(self, server: _RelaySMTP, session: Any, envelope: Any) -> str:
        listener = self._listener
        tenant = server.relay_tenant()
        if tenant is None:  # unreachable: RCPT refused them already; fail closed anyway
            return RELAY_DENIED.reply
        now = listener.clock.now()
        client_ip = str(session.peer[0])
        helo = str(session.host_name or "unknown")
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if server._tls_protocol is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        received = (
            f"Received: from {helo} ([{client_ip}])\r\n"
            f"\tby {listener.settings.hostname} (hrmonitor) with {protocol};\r\n"
            f"\t{listener.date_text(now)}\r\n"
        ).encode("utf-8", errors="replace")
        content = envelope.original_content or b""
        submission = Submission(
            tenant=tenant,
            client_ip=client_ip,
            helo=helo,
            mail_from=str(envelope.mail_from or "").strip("<>"),
            recipients=tuple(envelope.rcpt_tos),
            data=received + bytes(content),
            received_at=now,
            smtputf8=bool(envelope.smtp_utf8),
            auth_user=str(session.auth_data[1]) if session.authenticated else None,
        )
        try:
            return await listener.accept(submission)
        except Exception:
            log.exception("accepting a message from %s failed", client_ip)
            return "451 4.3.0 Temporary failure storing the message; try again"


class Listener:
    """Serves SMTP on ``settings.host:settings.port`` (port 0 picks a free port)."""

    def __init__(
        self,
        settings: ListenerSettings,
        accept: AcceptFn,
        clock: Clock,
        authenticate: AuthenticateFn | None = None,
    ) -> None:
        self.settings = settings
        self.accept = accept
        self.clock = clock
        self._authenticate = authenticate
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        # Asked at RCPT and again at DATA for every message, by few distinct clients;
        # the settings are frozen, so an answer holds for the listener's life.
        self._tenants: dict[str, str | None] = {}
        self._date: tuple[datetime | None, str] = (None, "")
        if settings.tls_cert:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(settings.tls_cert, settings.tls_key or None)

    def tenant_of(self, client_ip: str) -> str | None:
        """:func:`tenant_for` the listener's tenants, remembered per client address."""
        try:
            return self._tenants[client_ip]
        except KeyError:
            pass
        if len(self._tenants) >= 4096:  # a bound, not an LRU: clients are few
            self._tenants.clear()
        tenant = self._tenants[client_ip] = tenant_for(self.settings.tenants, client_ip)
        return tenant

    def date_text(self, now: datetime) -> str:
        """``now`` as a Received: date; formatted once per second (the text has no finer part)."""
        second = now.replace(microsecond=0)
        cached, text = self._date
        if cached is None or cached != second or cached.tzinfo is not second.tzinfo:
            text = format_datetime(second)
            self._date = (second, text)
        return text

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    def _authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self._authenticate is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", errors="replace")
        password = auth_data.password.decode("utf-8", errors="replace")
        tenant = self._authenticate(user, password)
        if tenant is None:
            log.info("SMTP AUTH failed for %r from %s", user, session.peer)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=(tenant, user))

    def _protocol(self) -> _RelaySMTP:
        return _RelaySMTP(
            self,
            data_size_limit=self.settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.settings.hostname,
            ident="hrmonitor",
            tls_context=self._tls,
            timeout=self.settings.timeout,
            auth_require_tls=True,
            authenticator=self._authenticator,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._protocol,
                host=self.settings.host,
                port=self.settings.port,
                reuse_address=True,
                reuse_port=self.settings.reuse_port or None,
            )
        except OSError as exc:
            raise BindError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {exc}"
            ) from exc
        log.info("SMTP listener on %s:%d", self.settings.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
