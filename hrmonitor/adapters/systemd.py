"""systemd's readiness protocol (sd_notify): one datagram to ``$NOTIFY_SOCKET``.

``Type=notify`` units (``contrib/systemd/hrmonitor.service``) are told
``READY=1`` once the listener accepts mail and the scheduler runs, and
``STOPPING=1`` when a drain begins, so ``systemctl start`` returns when mail can
flow and a dependent unit never starts against a daemon still migrating its
database. The protocol is a single datagram of ``KEY=value`` lines on a Unix
socket (sd_notify(3)); a name starting with ``@`` is in the abstract namespace.
Without ``$NOTIFY_SOCKET`` (not under systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

# A datagram to a local socket does not block for long; this bounds a stuck receiver.
SEND_TIMEOUT_SECONDS = 1.0


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) to systemd; False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_SECONDS)
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as error:
        log.warning("could not notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], error)
        return False
    return True
