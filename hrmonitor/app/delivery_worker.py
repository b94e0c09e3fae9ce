"""One delivery process (``[delivery] processes``): runs the daemon's SMTP transactions.

Started by the daemon (``app.worker_processes``), never by hand. Each
transaction the daemon sends runs through this process's own
:class:`Connections` (``[delivery]`` from the same config file), which keeps
sessions open per source IP and host; the result goes back as the daemon's
own ``Connections`` would have returned it (``adapters.smtp_out.handoff``).
It ignores SIGTERM: it ends when the daemon closes its pair, after the daemon's
runner drained (a SIGTERM sent to the whole process group must not cut the
transactions the daemon is still draining). Idle sessions then get QUIT.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from hrmonitor.adapters.smtp_out.handoff import DeliveryEnd
from hrmonitor.app import worker_main
from hrmonitor.app.event_loop import run_loop
from hrmonitor.app.smtp_parts import outbound_connections
from hrmonitor.config.loading import Config

# The daemon's own messages, already stored (a lowered max_message_size must not make
# a queued one undeliverable): this bound only keeps a broken frame from allocating more.
MAX_BODY = 1 << 31


async def serve(config: Config, channel: int) -> None:
    connections = outbound_connections(config)
    end = await worker_main.connect(channel, lambda: DeliveryEnd(connections, MAX_BODY))
    worker_main.log_to_daemon(end)
    end.ready()
    try:
        await end.closed  # the daemon closes the pair when it has drained (or is gone)
    finally:
        await connections.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = worker_main.arguments("hrmonitor.app.delivery_worker", argv)
    config = worker_main.prepare(args)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run_loop(serve(config, args.channel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
