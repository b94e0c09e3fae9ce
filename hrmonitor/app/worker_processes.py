"""Worker processes beside the daemon: SMTP in (``[listener] processes``) and out
(``[delivery] processes``).

One Python process runs its event loop on one core. Under load the daemon's
loop was busy serving SMTP sessions (aiosmtpd's command loop, a reply written
per command: about 40 %) and running outbound transactions (aiosmtplib:
about 30 %; benchmarks/README.md, "Relay"). So the daemon hands those to
worker processes, as Postfix's ``master`` runs ``smtpd`` and ``smtp``
processes for its queue manager, and keeps everything that needs the store,
the router or the node's counts: acceptance (routing, the group commit, the
``250``), the queue, choosing source IPs and hosts, what replies mean, the
connection limits. Each worker has a socket pair to the daemon
(``adapters.frames``); a listener process sends each message at the dot and
gives the daemon's reply; a delivery process runs each transaction it is
sent and returns its replies.

- Start: each worker is ``python -m hrmonitor.app.listener_worker`` or
  ``...delivery_worker``, reading the same config file; the daemon waits for
  every one to say it is ready. Listener processes accept on the daemon's
  own listening sockets (bound by the daemon: a bind error stops the start,
  port 0 picks one port for all); the kernel hands each connection to one.
- A worker that exits while the daemon runs is logged and started again
  (after 1 s, doubling to 60 s while they keep failing within a minute), as
  Postfix's ``master`` does. A listener process's connections count no more;
  a delivery process's transactions in flight end as failed (deferred, tried
  again as any connection failure is).
- Stop (the daemon's SIGTERM): listener processes first (no new mail): each
  gets SIGTERM, stops accepting, waits up to ``STOP_WAIT`` for the messages it
  handed over to be answered, and exits. Delivery processes last, after the
  queue runner drained: the daemon closes their pairs (they ignore SIGTERM, so
  a signal to the whole process group cannot cut what the daemon still drains).
  One that does not exit in time is killed.
- The daemon gone (``kill -9``): each worker sees its pair close, ends what
  it was doing (a listener answers ``451``) and exits.
- A reload's new tenants go to every listener process; the rest of
  ``[listener]`` and ``[delivery]`` takes effect at the next restart, as in
  one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from hrmonitor.adapters.smtp_in import ListenerSettings, Tenant
from hrmonitor.adapters.smtp_in import handoff as inbound
from hrmonitor.adapters.smtp_in.connections import ConnectionLimits
from hrmonitor.adapters.smtp_in.listener import AcceptFn
from hrmonitor.adapters.smtp_out import Failed, Sent
from hrmonitor.adapters.smtp_out import handoff as outbound
from hrmonitor.adapters.smtp_out.data import Body
from hrmonitor.errors import BindError

log = logging.getLogger(__name__)

READY_WITHIN = 60.0  # seconds for a new worker to import, read the config and serve
STOP_WAIT = 20.0  # seconds for a stopping listener process to finish what it handed over
RESTART_FIRST, RESTART_MOST = 1.0, 60.0


class End(Protocol):
    """The daemon's end of one worker's socket pair."""

    name: str
    ready: asyncio.Future[None]
    closed: asyncio.Future[None]

    def close(self) -> None: ...

    async def finish(self) -> None: ...


E = TypeVar("E", bound=End)


@dataclass
class _Worker(Generic[E]):
    index: int
    process: asyncio.subprocess.Process
    end: E
    started: float = field(default_factory=time.monotonic)


class Workers(Generic[E]):
    """``count`` processes of ``python -m MODULE``, each with a pair to an end of ``make_end``.

    ``sockets``: listening sockets every worker gets (``--listen FD``), set before
    :meth:`start`.
    """

    def __init__(
        self,
        kind: str,
        module: str,
        make_end: Callable[[str], E],
        *,
        config_path: Path,
        count: int,
        log_level: int,
        stop_by_closing: bool = False,
    ) -> None:
        """``stop_by_closing``: stop a worker by closing its pair (it ignores SIGTERM)."""
        self.kind = kind
        self._stop_by_closing = stop_by_closing
        self._module = module
        self._make_end = make_end
        self._config_path = config_path
        self.count = count
        self._log_level = log_level
        self.sockets: list[socket.socket] = []
        self.running: dict[int, _Worker[E]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._delay = RESTART_FIRST

    @property
    def pids(self) -> list[int]:
        return [each.process.pid for each in self.running.values()]

    async def start(self) -> None:
        try:
            started = [await self._spawn(index) for index in range(self.count)]
            await asyncio.gather(*(self._ready(each) for each in started))
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, index: int) -> _Worker[E]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        name = f"{self.kind} process {index + 1}"
        try:
            protocol = cast(Callable[[], asyncio.Protocol], lambda: self._make_end(name))
            _transport, made = await loop.create_unix_connection(protocol, sock=ours)
            end = cast(E, made)
            listen = [arg for sock in self.sockets for arg in ("--listen", str(sock.fileno()))]
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self._module,
                "--config",
                str(self._config_path),
                "--log-level",
                str(self._log_level),
                "--library-log-level",
                str(logging.getLogger("mail.log").getEffectiveLevel()),
                "--channel",
                str(theirs.fileno()),
                *listen,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=[theirs.fileno(), *(sock.fileno() for sock in self.sockets)],
            )
        finally:
            theirs.close()
        end.name = f"{name} (pid {process.pid})"
        each = _Worker(index, process, end)
        self.running[index] = each
        watcher = asyncio.ensure_future(self._watch(each))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return each

    async def _ready(self, each: _Worker[E]) -> None:
        exited: asyncio.Future[Any] = asyncio.ensure_future(each.process.wait())
        ready: asyncio.Future[Any] = each.end.ready
        try:
            done, _ = await asyncio.wait(
                {exited, ready}, timeout=READY_WITHIN, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not exited.done():
                exited.cancel()
        if each.end.ready not in done:
            raise BindError(
                f"{each.end.name} did not start (exit status {each.process.returncode}); "
                "the log lines above say why"
            )

    async def _watch(self, each: _Worker[E]) -> None:
        """Start a worker again when it exits while the daemon runs (Postfix's master)."""
        code = await each.process.wait()
        each.end.close()
        await each.end.closed
        if self._stopping or self.running.get(each.index) is not each:
            return
        del self.running[each.index]
        if time.monotonic() - each.started > 60.0:
            self._delay = RESTART_FIRST
        log.error("%s exited with status %s; starting another in %.0f s", each.end.name, code,
                  self._delay)  # fmt: skip
        await self._restart(each.index)

    async def _restart(self, index: int) -> None:
        """Start worker ``index`` again, after the back-off, until one starts.

        A process that starts but never says it is ready is killed: its own watcher
        then starts the next one.
        """
        while not self._stopping:
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, RESTART_MOST)
            if self._stopping:
                return
            try:
                again = await self._spawn(index)
            except OSError as error:
                log.error("could not start %s process %d: %s; trying again in %.0f s",
                          self.kind, index + 1, error, self._delay)  # fmt: skip
                continue
            try:
                await self._ready(again)
            except BindError as error:
                log.error("%s", error)
                with contextlib.suppress(ProcessLookupError):
                    again.process.kill()
            return

    async def stop(self, wait: float = STOP_WAIT + 5.0) -> None:
        """SIGTERM to each worker (or its pair closed); wait for it to exit (killed after
        ``wait`` seconds)."""
        self._stopping = True
        workers = list(self.running.values())
        for each in workers:
            if self._stop_by_closing:
                each.end.close()
                continue
            with contextlib.suppress(ProcessLookupError):
                each.process.send_signal(signal.SIGTERM)
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        for each in workers:
            try:
                await asyncio.wait_for(each.process.wait(), wait)
            except TimeoutError:
                log.error("%s did not stop; killing it", each.end.name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(each.process.pid, signal.SIGKILL)
                await each.process.wait()
            await each.end.finish()
            each.end.close()
        for watcher in list(self._watchers):
            watcher.cancel()
        self.running.clear()


class ListenerProcesses:
    """``[listener] processes``: SMTP sessions served beside the daemon, messages to ``accept``."""

    def __init__(
        self,
        settings: ListenerSettings,
        accept: AcceptFn,
        *,
        config_path: Path,
        count: int,
        log_level: int,
    ) -> None:
        self.settings = settings
        self.limits = ConnectionLimits(
            settings.max_connections, settings.max_connections_per_client
        )
        self.workers = Workers(
            "listener",
            "hrmonitor.app.listener_worker",
            lambda name: inbound.DaemonEnd(
                name, accept, self.limits, settings.max_message_size, self.settings.tenants
            ),
            config_path=config_path,
            count=count,
            log_level=log_level,
        )

    @property
    def port(self) -> int:
        if not self.workers.sockets:
            raise RuntimeError("the listener is not started")
        return int(self.workers.sockets[0].getsockname()[1])

    def reconfigure_tenants(self, tenants: Sequence[Tenant]) -> None:
        """New tenants (a reload), to every process now and to any started later."""
        self.settings = replace(self.settings, tenants=tuple(tenants))
        for each in self.workers.running.values():
            each.end.send_tenants(self.settings.tenants)

    async def start(self) -> None:
        self.workers.sockets = _bind(self.settings)
        await self.workers.start()
        log.info(
            "SMTP listener on %s:%d: %d listener process(es), pids %s",
            self.settings.host, self.port, self.workers.count,
            ", ".join(str(pid) for pid in self.workers.pids),
        )  # fmt: skip

    async def stop(self) -> None:
        await self.workers.stop()


class DeliveryProcesses:
    """``[delivery] processes``: outbound transactions run beside the daemon (a Sender)."""

    def __init__(self, *, config_path: Path, count: int, log_level: int) -> None:
        self.workers = Workers(
            "delivery",
            "hrmonitor.app.delivery_worker",
            outbound.DaemonEnd,
            config_path=config_path,
            count=count,
            log_level=log_level,
            stop_by_closing=True,
        )

    async def start(self) -> None:
        await self.workers.start()
        log.info(
            "outbound SMTP in %d delivery process(es), pids %s",
            self.workers.count,
            ", ".join(str(pid) for pid in self.workers.pids),
        )

    async def send(
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
        """One transaction, in the process that keeps (``source_ip``, ``host``)'s sessions
        (or the next one running, while that one is being started again)."""
        count = self.workers.count
        first = hash((source_ip, host)) % count
        for index in ((first + n) % count for n in range(count)):
            each = self.workers.running.get(index)
            if each is not None and each.end.up:
                break
        else:
            return Failed(host, source_ip, "no delivery process is running")
        return await each.end.send_transaction(
            source_ip=source_ip, host=host, mail_from=mail_from, recipients=recipients,
            body=body, smtputf8=smtputf8, port=port,
        )  # fmt: skip

    async def close(self) -> None:
        """After the runner drained: each process QUITs its idle sessions and exits."""
        await self.workers.stop(wait=15.0)


def _bind(settings: ListenerSettings) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address the host name has)."""
    try:
        infos = socket.getaddrinfo(
            settings.host or None, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
    sockets: list[socket.socket] = []
    port = settings.port
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = port or sock.getsockname()[1]  # port 0: the one picked, for every address
            sock.listen(
                100
            )  # asyncio's default, which each listener process's create_server sets again
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise BindError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
    return sockets
