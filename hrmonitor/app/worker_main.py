"""What every worker process (``app.worker_processes``) does around its own work.

Arguments (given by the daemon, never by hand): ``--config FILE``, ``--channel
FD`` (its socket pair to the daemon), ``--listen FD`` (listening sockets, for
a listener process), ``--log-level N`` and ``--library-log-level N`` (the
daemon's). SIGINT and SIGHUP are the daemon's to act on: ignored here (a
Ctrl-C at a terminal reaches the whole process group). Log records go to the
daemon once the pair is up (stderr before). A listener process ends on SIGTERM
or when the pair closes (the daemon gone); a delivery process only when the pair
closes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hrmonitor.adapters.frames import ToDaemon
from hrmonitor.config.loading import Config, load_config


class WorkerEnd(Protocol):
    closed: asyncio.Future[None]

    def log(self, record: logging.LogRecord, text: str) -> None: ...


P = TypeVar("P", bound=asyncio.Protocol)


def arguments(prog: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--channel", required=True, type=int)
    parser.add_argument("--listen", action="append", type=int, default=[])
    parser.add_argument("--log-level", type=int, default=logging.INFO)
    parser.add_argument("--library-log-level", type=int, default=logging.WARNING)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> Config:
    """Signals and logging as the daemon has them; the config file, read.

    The daemon checked the whole file (rule files, the store, ports) before it started
    any worker; a worker needs only ``[listener]``, ``[delivery]`` and the tenants.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=args.log_level, stream=sys.stderr)  # until the pair is up
    for library in ("mail.log", "asyncio"):  # aiosmtpd logs every connection at INFO
        logging.getLogger(library).setLevel(args.library_log_level)
    return load_config(args.config)


async def connect(fd: int, make_end: Callable[[], P]) -> P:
    """This process's end of its socket pair to the daemon (``--channel``)."""
    channel = socket.socket(fileno=fd)
    channel.setblocking(False)
    _transport, end = await asyncio.get_running_loop().create_unix_connection(
        make_end, sock=channel
    )
    return end


def log_to_daemon(end: WorkerEnd) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(ToDaemon(end.log))


async def until_stopped(end: WorkerEnd) -> None:
    """Until SIGTERM, or the pair closes."""
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    closed: asyncio.Future[Any] = end.closed
    await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
