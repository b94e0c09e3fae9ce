"""One listener process (``[listener] processes``): serves SMTP on the daemon's sockets.

Started by the daemon (``app.worker_processes``), never by hand. It serves
sessions with the same :class:`Listener` as the daemon's own (``[listener]``
and SMTP AUTH from the same config file) and hands each message to the
daemon at the dot (``adapters.smtp_in.handoff``); connections are admitted
by the daemon's limits. Stopping: no new connections, then up to
``STOP_WAIT`` for the messages handed over to be answered.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence

from hrmonitor.adapters.clock import SystemClock
from hrmonitor.adapters.smtp_in import Listener, Tenant
from hrmonitor.adapters.smtp_in.handoff import ListenerEnd
from hrmonitor.app import worker_main
from hrmonitor.app.event_loop import run_loop
from hrmonitor.app.smtp_parts import authenticator, listener_settings
from hrmonitor.app.worker_processes import STOP_WAIT
from hrmonitor.config.loading import Config

log = logging.getLogger("hrmonitor.listener")


async def serve(config: Config, channel: int, listening: Sequence[int]) -> None:
    settings = listener_settings(config)
    listener: Listener | None = None

    def on_tenants(tenants: tuple[Tenant, ...]) -> None:
        if listener is not None:
            listener.reconfigure_tenants(tenants)

    end = await worker_main.connect(channel, lambda: ListenerEnd(on_tenants))
    worker_main.log_to_daemon(end)
    listener = Listener(settings, end.accept, SystemClock(), authenticator(config), gate=end)
    await listener.start([socket.socket(fileno=fd) for fd in listening])
    end.ready()
    await worker_main.until_stopped(end)
    await listener.stop()  # no new connections
    if not await end.answered(STOP_WAIT):
        log.error("stopping with %d message(s) still unanswered by the daemon", end.in_flight)


def main(argv: Sequence[str] | None = None) -> int:
    args = worker_main.arguments("hrmonitor.app.listener_worker", argv)
    config = worker_main.prepare(args)
    run_loop(serve(config, args.channel, args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
