"""One SMTP session: aiosmtpd's protocol with the relay's policy in front of its commands.

- Connection limits: a client over ``max_connections`` or
  ``max_connections_per_client`` gets ``421`` instead of the greeting. The
  listener's gate counts them: its own, or in a listener process the daemon's.
- Command lines end with CRLF: a bare CR, bare LF or NUL in HELO/EHLO,
  MAIL or RCPT gets ``501 5.5.2`` naming it (aiosmtpd itself splits commands
  at LF and drops the line end, so what reaches us is checked as read).
- Envelope addresses are judged by :mod:`hrmonitor.core.delivery.envelope` on the
  raw argument before aiosmtpd parses it (its parser silently drops source
  routes); address-literal recipients are delivered or refused at RCPT, as
  ``[listener] address_literals`` says.
- DATA: a "line" ends at CRLF while reading (so only CRLF.CRLF ends the
  message); every bare CR and bare LF is then made CRLF before anything reads
  a header (:mod:`hrmonitor.core.delivery.line_ends`). A line still longer than
  ``max_line_length`` gets ``500 5.5.2`` and nothing is stored. Memory: DATA is
  processed a piece at a time into the one buffer that is stored (the Received:
  field, stamped when DATA begins, first), so a message is held once, not copied
  per step (issue 13: under twice its size above the daemon's baseline).
- The acknowledgement of DATA is whatever the ``accept`` callback answers: the
  relay service answers ``250`` only after the queue committed the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, AnyStr, ClassVar

from aiosmtpd.smtp import SMTP

from hrmonitor.core.delivery import line_ends
from hrmonitor.core.delivery.envelope import (
    RELAY_DENIED,
    Mailbox,
    NullPath,
    Refusal,
    Submission,
    address_literal,
    literal_refusal,
    parse_path,
    split_path,
)

if TYPE_CHECKING:
    from hrmonitor.adapters.smtp_in.listener import Listener

log = logging.getLogger(__name__)

TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
# The reply when the message could not be handed over or stored: the client sends it again.
FAILED_REPLY = "451 4.3.0 Temporary failure storing the message; try again"
_AIOSMTPD_TOO_BIG = ("552 Error: Too much mail data", "552 Error: message size exceeds")


class RelaySMTP(SMTP):
    """aiosmtpd's protocol with the relay's limits and address policy."""

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
        self._peer: str | None = None  # the client's address
        self._client: str | None = None  # the address counted against the limits, once admitted
        self._last_line = b""  # the last command line as read, line end included
        self.received_at: datetime | None = None  # when DATA began: the Received: stamp
        self._continued: list[str] = []  # a multi-line reply's lines before its last
        super().__init__(_Handler(listener), **kwargs)

    # --- connection limits --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._peer is None:  # not the STARTTLS re-entry
            peer = transport.get_extra_info("peername")
            self._peer = str(peer[0]) if peer else "?"
        super().connection_made(transport)

    async def _handle_client(self) -> None:
        # Runs once per connection, before the greeting: admitted, or 421 and closed.
        assert self._peer is not None
        gate = self._listener.gate
        reason = await gate.admit(self._peer)
        if reason is None:
            if self.transport is None or self.transport.is_closing():
                gate.release(self._peer)  # gone while it waited for the answer
                return
            self._client = self._peer
        else:
            hostname = self._listener.settings.hostname
            # A flood's clients often hang up before the 421 is written: nothing to report.
            with contextlib.suppress(ConnectionError):
                await self.push(f"421 4.7.0 {hostname} Error: too many connections; try later")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is not None:
            self._listener.gate.release(self._client)
            self._client = None  # released: a late second call must not count again
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        # Tell the client why (as Postfix does) before aiosmtpd closes the connection.
        writer: asyncio.StreamWriter | None = getattr(self, "_writer", None)
        if writer is not None and not writer.is_closing():
            hostname = self._listener.settings.hostname
            writer.write(f"421 4.4.2 {hostname} Error: timeout exceeded\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    # --- command lines ------------------------------------------------------------------

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        read_until = reader.readuntil

        async def readuntil(separator: Any = b"\n") -> bytes:
            # aiosmtpd strips the line end of each command before we see it; keep the
            # line as read, to tell CRLF from a bare LF and to find a bare CR inside.
            line = await read_until(separator)
            self._last_line = line
            return line

        reader.readuntil = readuntil  # type: ignore[method-assign]

    async def _bad_line(self) -> bool:
        """Answer 501 (and return True) if the command line had a bare CR/LF or a NUL."""
        problem = line_ends.command_problem(self._last_line)
        if problem is None:
            return False
        await self.push(f"501 5.5.2 Syntax error: {problem} in the command; lines end with CRLF")
        return True

    async def _bad_hostname(self, arg: str | None) -> bool:
        if await self._bad_line():
            return True
        if arg and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in arg):
            await self.push("501 5.5.2 Syntax error: control character in the host name")
            return True
        return False

    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._bad_hostname(hostname):
            await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._bad_hostname(hostname):
            await super().smtp_EHLO(hostname)

    async def push(self, status: AnyStr) -> None:
        """Write a reply line; a multi-line reply (EHLO's) goes out in one write.

        aiosmtpd writes and drains each line of a multi-line reply on its own:
        five send() calls for EHLO, about a third of the listener's writes per
        message. A continuation line (``250-...``) is held until its reply's last
        line (``250 ...``), which every multi-line reply ends with.
        """
        if not isinstance(status, str):
            if self._continued:  # not expected: a reply is str or bytes throughout
                await super().push("\r\n".join(self._continued))
                self._continued.clear()
            await super().push(status)
            return
        line = status
        if line.startswith(_AIOSMTPD_TOO_BIG):
            line = TOO_BIG
        elif line.startswith("500 Line too long"):
            line = f"500 5.5.2 Line too long (limit {self._listener.settings.max_line_length})"
        if len(line) > 3 and line[3] == "-":
            self._continued.append(line)
            return
        if self._continued:
            line = "\r\n".join([*self._continued, line])
            self._continued.clear()
        await super().push(line)

    # --- DATA ---------------------------------------------------------------------------

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd reads DATA a line at a time (about 50 awaits for a 2 KB message);
        # this reads it in chunks and applies the same rules to the whole: only CRLF.CRLF
        # ends it, the size limit gives 552 5.3.4 and an over-long line 500 5.5.2, both
        # only after the terminating dot.
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
        # The Received: field is stamped now, at DATA (as Postfix does), and written
        # first into the buffer that becomes the stored message: no copy to prepend it.
        handler: _Handler = self.event_handler
        self.received_at = self._listener.clock.now()
        limit = self.data_size_limit or 0
        reader = line_ends.DataReader(
            handler.received_field(self, self.received_at),
            size_limit=limit,
            max_line_length=self.line_length_limit - 2,
        )
        while True:
            chunk = await self._reader.read(65536)
            if not chunk:  # the client went away mid-DATA: nothing to store or answer
                return
            self._reset_timeout()  # an idle timeout, not a limit on the whole transfer
            after = reader.feed(chunk)
            del chunk
            if after is not None:
                break
        if after:
            # Commands sent after the dot without waiting for our reply: put them back
            # in front of whatever the reader still holds, for the command loop.
            self._reader._buffer[:0] = after  # type: ignore[attr-defined]
        if reader.too_big or (limit and reader.size > limit):
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(TOO_BIG)
            return
        if reader.too_long:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            limit_text = self._listener.settings.max_line_length
            await self.push(f"500 5.5.2 Line too long (limit {limit_text})")
            return
        # The message with its Received: field, once; aiosmtpd's envelope holds the
        # same object (no second copy), and drops it with the envelope after the reply.
        envelope.content = envelope.original_content = reader.message()
        del reader
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    # --- envelope -----------------------------------------------------------------------

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
        if await self._bad_line():
            return
        if arg is not None and arg[:5].upper() == "FROM:":
            verdict = self._judge(arg[5:], allow_null=True)
            if isinstance(verdict, Refusal):
                await self.push(verdict.reply)
                return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._bad_line():
            return
        envelope = self.envelope
        if envelope is not None and envelope.mail_from is not None and arg is not None:
            if self.relay_tenant() is None:
                log.info("relaying denied for %s", self.session.peer if self.session else "?")
                await self.push(RELAY_DENIED.reply)
                return
            if arg[:3].upper() == "TO:":
                verdict = self._judge(arg[3:], allow_null=False)
                if isinstance(verdict, Mailbox):
                    verdict = self._literal_policy(verdict)
                if isinstance(verdict, Refusal):
                    await self.push(verdict.reply)
                    return
            if len(envelope.rcpt_tos) >= self._listener.settings.max_recipients:
                await self.push("452 4.5.3 Too many recipients")
                return
        await super().smtp_RCPT(arg)

    def _literal_policy(self, mailbox: Mailbox) -> Mailbox | Refusal:
        address = address_literal(mailbox.domain)
        if address is None:
            return mailbox
        settings = self._listener.settings
        refusal = literal_refusal(
            address,
            deliver=settings.address_literals == "deliver",
            families=settings.literal_families,
        )
        return mailbox if refusal is None else refusal

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

    def received_field(self, server: RelaySMTP, now: datetime) -> bytes:
        """The Received: field the relay puts first, for the session ``server`` at ``now``."""
        session: Any = server.session
        listener = self._listener
        client_ip = str(session.peer[0])
        helo = str(session.host_name or "unknown")
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if server._tls_protocol is not None:
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        return (
            f"Received: from {helo} ([{client_ip}])\r\n"
            f"\tby {listener.settings.hostname} (hrmonitor) with {protocol};\r\n"
            f"\t{listener.date_text(now)}\r\n"
        ).encode("utf-8", errors="replace")

    async def handle_DATA(self, server: RelaySMTP, session: Any, envelope: Any) -> str:
        listener = self._listener
        tenant = server.relay_tenant()
        if tenant is None:  # unreachable: RCPT refused them already; fail closed anyway
            return RELAY_DENIED.reply
        now = server.received_at or listener.clock.now()
        client_ip = str(session.peer[0])
        submission = Submission(
            tenant=tenant,
            client_ip=client_ip,
            helo=str(session.host_name or "unknown"),
            mail_from=str(envelope.mail_from or "").strip("<>"),
            recipients=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",  # with its Received: field (smtp_DATA)
            received_at=now,
            smtputf8=bool(envelope.smtp_utf8),
            auth_user=str(session.auth_data[1]) if session.authenticated else None,
        )
        try:
            return await listener.accept(submission)
        except Exception:
            log.exception("accepting a message from %s failed", client_ip)
            return FAILED_REPLY
