"""The sending-limit alert: raised once per sender when it goes over, resolved when it is under.

The Router with the shipped rules (``over-sending-limits`` carries ``alert =
"sending-limit"``), the real mail DNS adapter against the loopback DNS
server, and a fake clock: the hour passes without sleeping.
"""

from __future__ import annotations

from datetime import timedelta

from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.services.relay.routing import Router
from tests.fixtures.peers import FakeClock
from tests.fixtures.router import MESSAGE


async def _send(router: Router, clock: FakeClock, sender: str, rcpts: int = 1) -> str:
    decision = await router.route(
        mail_from=sender,
        rcpts=[f"r{i}@rcpt.test" for i in range(rcpts)],
        client_ip="127.0.0.1",
        message=MESSAGE,
        arrival=clock.now(),
    )
    return decision.pool


async def test_a_sender_going_over_raises_one_alert_and_is_resolved_once_under_again(
    router: Router, fake_clock: FakeClock
) -> None:
    raised: list[Alert] = []
    router.on_alert = raised.append

    assert await _send(router, fake_clock, "a@contoso.example", 3) == "normal"  # at the limit
    assert raised == []
    for _ in range(4):  # every message over the limit goes high; one alert for all of them
        fake_clock.advance(timedelta(minutes=1))
        assert await _send(router, fake_clock, "<A@contoso.example>") == "high-risk"
    [alert] = raised
    assert alert.kind is AlertKind.SENDING_LIMIT
    assert alert.key == "sending-limit:a@contoso.example"
    assert not alert.resolved
    assert alert.details["last_hour"] == 4
    assert "over its sending limits" in alert.summary

    await _send(router, fake_clock, "b@contoso.example")  # another sender changes nothing
    router.prune(fake_clock.now())  # still over within the hour: nothing resolves
    assert len(raised) == 1

    fake_clock.advance(timedelta(minutes=61))
    router.prune(fake_clock.now())
    assert [(a.key, a.resolved) for a in raised[1:]] == [("sending-limit:a@contoso.example", True)]
    router.prune(fake_clock.now())
    assert len(raised) == 2  # resolved once

    await _send(router, fake_clock, "a@contoso.example", 4)  # over again: a new alert
    assert [(a.key, a.resolved) for a in raised[2:]] == [("sending-limit:a@contoso.example", False)]


async def test_the_next_message_under_the_limits_resolves_the_alert_without_waiting_for_prune(
    router: Router, fake_clock: FakeClock
) -> None:
    raised: list[Alert] = []
    router.on_alert = raised.append
    await _send(router, fake_clock, "a@contoso.example", 5)
    fake_clock.advance(timedelta(minutes=61))
    assert await _send(router, fake_clock, "a@contoso.example") == "normal"
    assert [a.resolved for a in raised] == [False, True]
