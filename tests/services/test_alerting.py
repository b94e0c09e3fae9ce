"""Alerting: a batch sends what the same alerts emitted one by one would send, deduped in one go.

Real peers throughout: the store (SQLite and PostgreSQL), a webhook receiver
and an SMTP sink on loopback, the log channel into caplog. Time is the alerts'
own ``at``: no clock is read, nothing sleeps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest

from hrmonitor.adapters.alerts import Channel, Delivery, EmailChannel, LogChannel, WebhookChannel
from hrmonitor.adapters.store import Store, open_store
from hrmonitor.core.alert import Alert, AlertKind, Claim
from hrmonitor.core.model import Severity
from hrmonitor.errors import StoreError
from hrmonitor.services.alerting import Alerting
from tests.fixtures.smtp_sink import SmtpSink
from tests.fixtures.store import CountingStore
from tests.fixtures.webhook import WebhookReceiver

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REPEAT = timedelta(hours=4)


def raised(key: str, at: datetime, severity: Severity = Severity.HIGH) -> Alert:
    return Alert(
        AlertKind.LISTING,
        severity,
        key,
        f"{key} listed",
        at,
        {"zone": "bl", "codes": ("127.0.0.2",), "since": T0},
        pool="normal",
        ip="192.0.2.10",
    )


def resolved(key: str, at: datetime) -> Alert:
    return Alert(
        AlertKind.DELISTING, Severity.HIGH, key, f"{key} delisted", at, {"zone": "bl"},
        pool="normal", ip="192.0.2.10", resolved=True,
    )  # fmt: skip


# Three sweeps' worth: new keys, a key twice, repeats held back and due, resolutions of
# open and of unknown keys, a reopening inside the repeat interval.
BATCHES = [
    [
        raised("a", T0, Severity.LOW),
        raised("b", T0, Severity.HIGH),
        raised("c", T0, Severity.CRITICAL),
        raised("b", T0, Severity.HIGH),
        Alert(AlertKind.ZONE_HEALTH, Severity.MEDIUM, "zone-health:bl", "zone bl is dead", T0),
    ],
    [
        raised("b", T0 + timedelta(hours=1)),
        resolved("a", T0 + timedelta(hours=1)),
        resolved("never", T0 + timedelta(hours=1)),
        raised("d", T0 + timedelta(hours=1), Severity.CRITICAL),
        raised("a", T0 + timedelta(hours=1), Severity.LOW),
    ],
    [
        raised("b", T0 + REPEAT),
        raised("c", T0 + REPEAT - timedelta(seconds=1), Severity.CRITICAL),
        resolved("d", T0 + REPEAT),
        resolved("d", T0 + REPEAT),
    ],
]
# Which of them pass dedupe, batch by batch.
PASSED = [
    [True, True, True, False, True],
    [False, True, False, True, True],
    [True, False, True, False],
]


@dataclass
class Recording:
    """A channel that keeps what it was given, in order; ``fail`` makes it raise."""

    name: str = "recording"
    min_severity: Severity = Severity.LOW
    fail: bool = False
    got: list[Alert] = field(default_factory=list)

    async def send(self, alert: Alert) -> Delivery:
        self.got.append(alert)
        if self.fail:
            raise RuntimeError("channel bug")
        return Delivery(self.name, True)


class Counter:
    def __init__(self) -> None:
        self.counted: list[tuple[str, str]] = []
        self.resent: list[tuple[str, str, str]] = []

    def alert(self, kind: str, severity: str) -> None:
        self.counted.append((kind, severity))

    def alert_resent(self, kind: str, severity: str, reason: str) -> None:
        self.resent.append((kind, severity, reason))


def as_sent(alerts: Sequence[Alert]) -> list[Alert]:
    """What goes out: a resolution with the kind and severity of the alert it resolves."""
    raised_as: dict[str, Alert] = {}
    out = []
    for alert in alerts:
        if alert.resolved:
            was = raised_as[alert.key]
            out.append(replace(alert, kind=was.kind, severity=was.severity, event=str(alert.kind)))
        else:
            raised_as[alert.key] = alert
            out.append(alert)
    return out


@dataclass
class Observed:
    """Everything one run of the scenario sent, per channel, and what ``emit*`` returned."""

    returned: list[list[list[Delivery]]]
    log: list[tuple[int, str]]
    webhook: list[dict[str, object]]
    mail: list[tuple[str, str]]
    counted: list[tuple[str, str]]
    resent: list[tuple[str, str, str]]
    sent: list[Alert]


async def run_scenario(
    store: Store,
    logger: str,
    webhook: WebhookReceiver,
    sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
    *,
    batched: bool,
) -> Observed:
    mail_before = len(sink.messages)
    webhook_before = len(webhook.bodies)
    channels: list[Channel] = [
        LogChannel(logging.getLogger(logger)),
        WebhookChannel(webhook.url, timeout=5, min_severity=Severity.HIGH),
        EmailChannel(
            ("ops@example.test",), "hrmonitor@example.test", sink.host, sink.port,
            timeout=5, min_severity=Severity.CRITICAL,
        ),
    ]  # fmt: skip
    counter = Counter()
    alerting = Alerting(store, channels, REPEAT, counter)
    returned: list[list[list[Delivery]]] = []
    for batch in BATCHES:
        if batched:
            returned.append(await alerting.emit_batch(batch))
        else:
            returned.append([await alerting.emit(alert) for alert in batch])
    mails = [message_from_bytes(m.data) for m in sink.messages[mail_before:]]
    return Observed(
        returned=returned,
        log=[(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger],
        webhook=webhook.bodies[webhook_before:],
        mail=[(str(m["Subject"]), _body(m)) for m in mails],
        counted=counter.counted,
        resent=counter.resent,
        sent=alerting.sent,
    )


def _body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def test_a_batch_sends_exactly_what_the_alerts_emitted_one_by_one_send(
    store: Store,
    tmp_path: Path,
    webhook: WebhookReceiver,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    single_store = open_store(f"sqlite:///{tmp_path / 'single.db'}")
    try:
        single_store.upgrade()
        one_by_one = await run_scenario(
            single_store, "test.single", webhook, smtp_sink, caplog, batched=False
        )
    finally:
        single_store.close()
    batched = await run_scenario(store, "test.batch", webhook, smtp_sink, caplog, batched=True)

    assert batched == one_by_one
    passing = as_sent(
        [
            alert
            for batch, passed in zip(BATCHES, PASSED, strict=True)
            for alert, ok in zip(batch, passed, strict=True)
            if ok
        ]
    )
    assert [[bool(d) for d in r] for r in batched.returned] == PASSED
    assert batched.sent == passing
    # One log line per passing alert, one POST per alert the webhook admits, one e-mail
    # per alert the mail channel admits: resolutions go to every channel.
    assert len(batched.log) == len(passing)
    details = '{"codes": ["127.0.0.2"], "since": "2026-11-28T12:00:00+00:00", "zone": "bl"}'
    assert batched.log[0] == (logging.INFO, f"[listing] low: a listed {details}")
    # The resolution keeps its alert's kind and severity (the log says "resolved").
    assert batched.log[4] == (logging.INFO, '[listing] resolved: a delisted {"zone": "bl"}')
    assert passing[4].severity is Severity.LOW
    assert passing[4].event == "delisting"
    assert batched.webhook == [
        a.as_dict() for a in passing if a.resolved or a.severity.at_least(Severity.HIGH)
    ]
    assert [subject for subject, _ in batched.mail] == [
        "[hrmonitor CRITICAL] c listed",
        "[hrmonitor RESOLVED] a delisted",
        "[hrmonitor CRITICAL] d listed",
        "[hrmonitor RESOLVED] d delisted",
    ]
    assert json.loads(batched.mail[0][1]) == passing[2].as_dict()
    # Conditions that opened count; "a" opened again within the repeat interval of its
    # resolution (flapping) and "b" still open and sent again after it do not.
    assert batched.counted == [
        ("listing", "low"),
        ("listing", "high"),
        ("listing", "critical"),
        ("zone-health", "medium"),
        ("listing", "critical"),
    ]
    assert batched.resent == [("listing", "low", "refire"), ("listing", "high", "repeat")]
    assert all(d.ok for r in batched.returned for deliveries in r for d in deliveries)


async def test_a_batch_is_deduplicated_in_one_store_transaction(store: Store) -> None:
    counting = CountingStore(store)
    channel = Recording()
    alerting = Alerting(counting, [channel], REPEAT)
    first = [raised(f"k{n}", T0) for n in range(200)]
    await alerting.emit_batch([*first, *first])
    assert counting.batches == [400]
    assert channel.got == first  # each key once, in order

    await alerting.emit_batch(
        [raised(f"k{n}", T0 + REPEAT - timedelta(seconds=1)) for n in range(3)]
    )
    assert channel.got == first  # held back: not due yet
    due = [raised(f"k{n}", T0 + REPEAT) for n in range(3)]
    await alerting.emit_batch(due)
    assert channel.got == [*first, *due]
    assert counting.batches == [400, 3, 3]

    await alerting.emit_batch([])
    assert counting.batches == [400, 3, 3]  # nothing to tell: no transaction


async def test_a_resolution_follows_its_alert_on_every_channel(store: Store) -> None:
    loud = Recording("loud", Severity.CRITICAL)
    quiet = Recording("quiet")
    alerting = Alerting(store, [loud, quiet], REPEAT)
    batch = [raised("k", T0, Severity.HIGH), resolved("k", T0), resolved("k", T0)]
    assert [len(d) for d in await alerting.emit_batch(batch)] == [1, 2, 0]
    # The resolution goes out as the HIGH listing it resolves, not as a (LOW) delisting.
    sent_resolution = replace(batch[1], kind=AlertKind.LISTING, event="delisting")
    assert sent_resolution.severity is Severity.HIGH
    assert quiet.got == [batch[0], sent_resolution]
    assert loud.got == [sent_resolution]  # it never saw the HIGH alert, but hears it resolved


async def test_a_failing_channel_neither_stops_the_others_nor_reopens_the_alert(
    store: Store, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 500
    broken = Recording("broken", fail=True)
    fine = Recording("fine")
    hook = WebhookChannel(webhook.url, timeout=5)
    alerting = Alerting(store, [broken, hook, fine], REPEAT)
    batch = [raised("a", T0), raised("b", T0)]

    returned = await alerting.emit_batch(batch)

    assert fine.got == batch
    assert broken.got == batch
    assert [b["key"] for b in webhook.bodies] == ["a", "b"]
    assert (
        returned
        == [
            [
                Delivery("broken", False, "RuntimeError('channel bug')"),
                Delivery(hook.name, False, "HTTP 500"),
                Delivery("fine", True),
            ]
        ]
        * 2
    )
    assert "alert channel broken raised" in caplog.text
    # As for a single alert: the send is recorded before the channels are tried, so a
    # failed delivery is not retried until the repeat interval (the log always has it).
    assert await alerting.emit_batch([raised("a", T0 + timedelta(minutes=5))]) == [[]]
    assert await alerting.emit(raised("b", T0 + timedelta(minutes=5))) == []
    assert fine.got == batch


async def test_when_the_store_fails_nothing_is_sent() -> None:
    channel = Recording()
    alerting = Alerting(FailingStore(), [channel], REPEAT)
    with pytest.raises(StoreError):
        await alerting.emit_batch([raised("a", T0), raised("b", T0)])
    assert channel.got == []
    assert alerting.sent == []


class FailingStore:
    def claim_alerts_detailed(self, batch: Sequence[Alert], repeat_after: timedelta) -> list[Claim]:
        raise StoreError("database error: gone")
