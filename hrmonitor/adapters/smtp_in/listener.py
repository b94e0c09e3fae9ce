"""The listener: where SMTP sessions are served, for whom, and within which limits.

Relaying is allowed for a client whose address is in a tenant's networks,
or that authenticated (SMTP AUTH, only after STARTTLS) as one of a tenant's
users. Everyone else gets ``550 5.7.1 relaying denied`` at RCPT, so no
message from them ever reaches DATA and nothing of theirs is stored. What a
session checks is in :mod:`hrmonitor.adapters.smtp_in.session`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Protocol

from aiosmtpd.smtp import AuthResult, LoginPassword

from hrmonitor.adapters.smtp_in.connections import ConnectionLimits
from hrmonitor.adapters.smtp_in.session import RelaySMTP
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.model import Clock
from hrmonitor.errors import BindError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
AcceptFn = Callable[[Submission], Awaitable[str]]
# (user, password) -> the tenant the user sends for, or None to refuse the login.
AuthenticateFn = Callable[[str, str], str | None]


class ConnectionGate(Protocol):
    """Who may open one more connection: the listener's own limits, or the daemon's
    (a listener process asks the daemon, so that the limits hold for the node)."""

    async def admit(self, client: str) -> str | None:
        """None if ``client`` may have one more connection (now counted), else why not."""
        ...

    def release(self, client: str) -> None: ...


class LocalGate:
    """:class:`ConnectionLimits` of this process."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits

    async def admit(self, client: str) -> str | None:
        return self.limits.admit(client)

    def release(self, client: str) -> None:
        self.limits.release(client)


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
    timeout: float = 300.0  # idle seconds before a silent client gets 421 and is dropped
    # One file descriptor each: the defaults leave room in a 1,024-fd process for the
    # store, DNS and the outbound connections ([delivery] concurrency).
    max_connections: int = 600
    max_connections_per_client: int = 50
    # "refuse": 550 at RCPT; "deliver": to the literal address (RFC 5321 4.1.3), if
    # one of ``literal_families`` (the IP versions the pools send from) can reach it.
    address_literals: str = "refuse"
    literal_families: frozenset[int] = frozenset({4, 6})
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


class Listener:
    """Serves SMTP on ``settings.host:settings.port`` (port 0 picks a free port)."""

    def __init__(
        self,
        settings: ListenerSettings,
        accept: AcceptFn,
        clock: Clock,
        authenticate: AuthenticateFn | None = None,
        gate: ConnectionGate | None = None,
    ) -> None:
        """``gate``: who admits connections; by default this listener's own limits."""
        self.settings = settings
        self.accept = accept
        self.clock = clock
        self._authenticate = authenticate
        self._servers: list[asyncio.Server] = []
        self.gate: ConnectionGate = gate or LocalGate(
            ConnectionLimits(settings.max_connections, settings.max_connections_per_client)
        )
        self._tls: ssl.SSLContext | None = None
        # Asked at RCPT and again at DATA for every message, by few distinct clients;
        # an answer holds until a reload hands over new tenants.
        self._tenants: dict[str, str | None] = {}
        self._date: tuple[datetime | None, str] = (None, "")
        if settings.tls_cert:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(settings.tls_cert, settings.tls_key or None)

    def reconfigure_tenants(self, tenants: Sequence[Tenant]) -> None:
        """New tenants' networks (a reload), for every question from now on.

        Sessions already open are kept; their next RCPT or DATA asks again.
        """
        self.settings = replace(self.settings, tenants=tuple(tenants))
        self._tenants = {}

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
        if not self._servers:
            raise RuntimeError("the listener is not started")
        return int(self._servers[0].sockets[0].getsockname()[1])

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

    def _protocol(self) -> RelaySMTP:
        return RelaySMTP(
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

    async def start(self, sockets: Sequence[socket.socket] = ()) -> None:
        """Listen on ``settings.host:port``, or serve ``sockets`` already listening
        (a listener process serves the daemon's)."""
        loop = asyncio.get_running_loop()
        if sockets:
            for sock in sockets:
                self._servers.append(await loop.create_server(self._protocol, sock=sock))
            return
        try:
            server = await loop.create_server(
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
        self._servers.append(server)
        log.info("SMTP listener on %s:%d", self.settings.host, self.port)

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
