"""Network errors reaching a DNSBL nameserver are per-query errors, never an exception.

ECONNREFUSED is real here (a loopback port nothing listens on: the kernel's
ICMP port-unreachable arrives as an error on the connected UDP socket);
ENETUNREACH and EHOSTUNREACH cannot be made on a host with a default route,
so ``connect``/``send`` are made to raise them at the adapter edge.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import pytest

from hrmonitor.adapters.dns.dnsbl.engine import DnsblEngine
from hrmonitor.core.model import Status, Unknown, ZoneHealth
from tests.fixtures.rbldnsd import Rbldnsd

pytestmark = pytest.mark.rbldnsd


@pytest.fixture
def closed_port() -> tuple[str, int]:
    """A loopback UDP port with nothing listening on it."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()
    return (str(address[0]), int(address[1]))


def _refuse(
    monkeypatch: pytest.MonkeyPatch, method: str, target: tuple[str, int], code: int
) -> None:
    real = getattr(socket.socket, method)

    def refusing(self: socket.socket, *args: Any) -> Any:
        peer = args[0] if method == "connect" else self.getpeername()
        if tuple(peer[:2]) == target:
            raise OSError(code, os.strerror(code))
        return real(self, *args)

    monkeypatch.setattr(socket.socket, method, refusing)


async def test_a_nameserver_refusing_on_loopback_is_unreachable_at_once_not_on_timeout(
    rbldnsd: Rbldnsd, closed_port: tuple[str, int]
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    # A timeout this long would show as a hung test: the refusal must end each try.
    async with DnsblEngine([closed_port[0]], closed_port[1], timeout=60, attempts=2) as engine:
        result = await engine.sweep(["127.0.0.20", "127.0.0.9"], [bl])
    assert result.health == {"bl": ZoneHealth.UNREACHABLE}
    assert [a.status for a in result.answers] == [Status.UNKNOWN, Status.UNKNOWN]
    reasons = [a.reason for a in result.answers if isinstance(a, Unknown)]
    assert len(reasons) == 2
    assert all("nameserver unreachable" in r and "refused" in r.lower() for r in reasons)


@pytest.mark.parametrize("code", [errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED])
async def test_a_nameserver_the_network_cannot_reach_at_open_gives_unknown_answers(
    rbldnsd: Rbldnsd, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    _refuse(monkeypatch, "connect", rbldnsd.nameserver, code)
    engine = DnsblEngine([rbldnsd.host], rbldnsd.port, timeout=60, attempts=2)
    async with engine:  # the old code raised OSError out of open() here
        result = await engine.sweep(["127.0.0.20"], [bl])
        assert result.health == {"bl": ZoneHealth.UNREACHABLE}
        [answer] = result.answers
        assert isinstance(answer, Unknown)
        assert os.strerror(code) in answer.reason

        monkeypatch.undo()  # the route is back: the next call connects and answers
        again = await engine.sweep(["127.0.0.20"], [bl])
    assert again.health == {"bl": ZoneHealth.OK}
    assert [a.status for a in again.answers] == [Status.LISTED]


async def test_a_send_failing_with_no_route_moves_on_to_the_next_nameserver(
    rbldnsd: Rbldnsd, monkeypatch: pytest.MonkeyPatch
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    unroutable = ("127.0.0.2", rbldnsd.port)  # asked first; its sends find no route
    _refuse(monkeypatch, "send", unroutable, errno.EHOSTUNREACH)
    engine = DnsblEngine([unroutable[0], rbldnsd.host], rbldnsd.port, timeout=60, attempts=2)
    async with engine:
        result = await engine.sweep(["127.0.0.20", "127.0.0.9"], [bl])
    assert result.health == {"bl": ZoneHealth.OK}
    assert [a.status for a in result.answers] == [Status.LISTED, Status.CLEAN]
