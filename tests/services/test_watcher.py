"""The surge watcher service: events in, dsn-surge alerts and resolutions out, never a crash."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.bounce.classify import classify_message
from hrmonitor.core.surge import (
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    SurgeSettings,
)
from hrmonitor.core.surge.verp import BatvKeys, BatvVerdict, batv_verify
from hrmonitor.services.surge.watcher import SurgeWatcher, failed_from
from tests.fixtures.peers import FakeClock

MINUTE = timedelta(minutes=1)
KEYS = BatvKeys({3: b"a secret of sixteen+ bytes"}, current=3)
SETTINGS = SurgeSettings(min_messages=20, min_dsns=5)


class Sink:
    """Collects alerts; optionally fails on the first one, like a webhook that is down."""

    def __init__(self, fail_first: bool = False) -> None:
        self.alerts: list[Alert] = []
        self.fail_first = fail_first

    async def __call__(self, alert: Alert) -> None:
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("webhook down")
        self.alerts.append(alert)


def _ordinary_minute(watcher: SurgeWatcher, at: datetime, clock_mid: int) -> None:
    for i in range(10):
        mid = f"<{clock_mid}.{i}@contoso.example>"
        watcher.message_accepted(
            MessageAccepted(
                at, "contoso", "news@contoso.example", (f"r{i}@dest.example",), message_id=mid
            )
        )
        watcher.delivery_outcome(
            DeliveryOutcome(
                at,
                "contoso",
                "news@contoso.example",
                f"r{i}@dest.example",
                "203.0.113.20",
                "delivered",
            )
        )


async def _minutes(
    watcher: SurgeWatcher, clock: FakeClock, count: int, backscatter: int = 0
) -> None:
    for minute in range(count):
        at = clock.now()
        _ordinary_minute(watcher, at, minute)
        for i in range(backscatter):
            watcher.bounce_returned(
                BounceReturned(
                    at,
                    f"forged{i}@contoso.example",
                    (FailedAddress(f"victim{i}@elsewhere.example", "userunknown"),),
                    tenant="contoso",
                )
            )
        clock.advance(MINUTE)
        await watcher.tick(clock.now())


async def test_backscatter_against_batv_tagged_mail_alerts_exactly_and_resolves(
    fake_clock: FakeClock,
) -> None:
    """Untagged bounces to a BATV-tagging tenant: one exact backscatter alert, then resolution."""
    sink = Sink()
    watcher = SurgeWatcher(SETTINGS, sink, batv=KEYS)
    await _minutes(watcher, fake_clock, 60)
    assert sink.alerts == []
    await _minutes(watcher, fake_clock, 10, backscatter=40)
    tenant = [a for a in sink.alerts if a.key == "dsn-surge:tenant=contoso"]
    assert len(tenant) == 1
    assert tenant[0].kind is AlertKind.DSN_SURGE
    assert tenant[0].details["cause"] == "backscatter"
    evidence = tenant[0].details["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["exact"] is True
    assert not tenant[0].resolved
    await _minutes(watcher, fake_clock, 40)
    tenant = [a for a in sink.alerts if a.key == "dsn-surge:tenant=contoso"]
    assert [a.resolved for a in tenant] == [False, True]
    assert watcher.snapshot(fake_clock.now()).surges == ()


async def test_bounces_to_our_own_tagged_senders_count_as_ours(fake_clock: FakeClock) -> None:
    """tag_sender's address verifies on the way back: the bounce is the tenant's hard bounce."""
    watcher = SurgeWatcher(SETTINGS, Sink(), batv=KEYS)
    tagged = watcher.tag_sender("news@contoso.example", fake_clock.now())
    assert batv_verify(tagged, KEYS, fake_clock.now()).verdict is BatvVerdict.VALID
    assert watcher.tag_sender("", fake_clock.now()) == ""
    watcher.bounce_returned(
        BounceReturned(
            fake_clock.now(),
            tagged,
            (FailedAddress("gone@dest.example", "userunknown"),),
            tenant="contoso",
        )
    )
    (row,) = watcher.snapshot(fake_clock.now()).rates
    assert row.hard_bounces == 1


async def test_without_batv_keys_senders_are_left_alone(fake_clock: FakeClock) -> None:
    """Tagging is opt-in: with no keys the envelope sender is unchanged."""
    watcher = SurgeWatcher(SETTINGS, Sink())
    assert watcher.tag_sender("news@contoso.example", fake_clock.now()) == "news@contoso.example"


async def test_a_failing_sink_does_not_stop_the_next_alert(fake_clock: FakeClock) -> None:
    """The first alert's delivery fails; the tick survives and later alerts still go out."""
    sink = Sink(fail_first=True)
    watcher = SurgeWatcher(SETTINGS, sink)
    at = fake_clock.now()
    for i in range(30):
        watcher.delivery_outcome(
            DeliveryOutcome(
                at,
                "contoso",
                "a@contoso.example",
                f"x{i}@d.example",
                "203.0.113.20",
                "blocked",
                hard=True,
            )
        )
    fake_clock.advance(MINUTE)
    sent = await watcher.tick(fake_clock.now())
    assert len(sent) >= 2
    assert len(sink.alerts) == len(sent) - 1


async def test_a_bad_event_is_dropped_and_counted_not_raised(fake_clock: FakeClock) -> None:
    """A naive timestamp cannot be BATV-checked: the event is dropped, the relay carries on."""
    watcher = SurgeWatcher(SETTINGS, Sink(), batv=KEYS)
    tagged = watcher.tag_sender("a@contoso.example", fake_clock.now())
    watcher.bounce_returned(BounceReturned(datetime(2026, 11, 28, 12, 0), tagged))
    assert watcher.dropped_events == 1
    assert watcher.snapshot(fake_clock.now()).dropped_events == 1


async def test_snapshot_is_json_ready_with_rates_and_open_surges(fake_clock: FakeClock) -> None:
    """The report gets rates per tenant and open surges as plain JSON values."""
    watcher = SurgeWatcher(SETTINGS, Sink())
    at = fake_clock.now()
    for i in range(30):
        watcher.delivery_outcome(
            DeliveryOutcome(
                at,
                "contoso",
                "a@contoso.example",
                f"x{i}@d.example",
                "203.0.113.20",
                "userunknown",
                hard=True,
            )
        )
    fake_clock.advance(MINUTE)
    await watcher.tick(fake_clock.now())
    data = json.loads(json.dumps(watcher.snapshot(fake_clock.now()).as_dict()))
    assert data["rates"][0]["tenant"] == "contoso"
    assert data["rates"][0]["status"] == "pause"
    assert {s["dimension"] for s in data["surges"]} >= {"tenant", "source-ip"}
    assert data["tracked_keys"] >= 3


def test_next_tick_is_the_start_of_the_next_bucket(fake_clock: FakeClock) -> None:
    """Ticks land on bucket boundaries, so each evaluation sees whole buckets."""
    watcher = SurgeWatcher(SETTINGS, Sink())
    now = fake_clock.now() + timedelta(seconds=17)
    assert watcher.next_tick(now) == fake_clock.now() + MINUTE
    assert watcher.next_tick(fake_clock.now()) == fake_clock.now() + MINUTE


def test_bounce_classifier_recipients_convert_to_watcher_values() -> None:
    """failed_from takes the classifier's recipients as they are: address, reason, hard, text."""

    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nTo: news@contoso.example\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; gone@dest.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n"
    )
    report = classify_message(raw)
    (failed,) = failed_from(report.recipients)
    assert failed == FailedAddress("gone@dest.example", "userunknown", True, failed.diagnostic)
    assert "no such user" in failed.diagnostic


async def test_a_failing_evaluation_is_logged_and_the_next_tick_works(
    fake_clock: FakeClock,
) -> None:
    """An evaluation that raises is logged and sends nothing; the next tick works again."""
    sink = Sink()
    watcher = SurgeWatcher(SETTINGS, sink)
    for i in range(30):
        watcher.delivery_outcome(
            DeliveryOutcome(
                fake_clock.now(), "contoso", "a@contoso.example", f"x{i}@d.example",
                "203.0.113.20", "blocked", hard=True,
            )
        )  # fmt: skip

    class Broken(datetime):
        def timestamp(self) -> float:
            raise OverflowError("clock went wrong")

    assert await watcher.tick(Broken(2026, 11, 28, 12, 1)) == ()
    fake_clock.advance(MINUTE)
    assert await watcher.tick(fake_clock.now())
    assert sink.alerts
