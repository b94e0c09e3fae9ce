"""Whether a TCP address can be listened on, asked before anything starts listening.

The daemon checks its listener and metrics addresses first, so that a port in
use is a config error (exit 2, naming the key) instead of a traceback after the
SMTP listener has already started.
"""

from __future__ import annotations

import socket


def listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (None: it can). Port 0 always can."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:
        return f"cannot resolve {host!r}: {error}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # as the listeners bind: SO_REUSEADDR, so a port in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as error:
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None
