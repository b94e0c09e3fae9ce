"""The relay's traffic, told to the surge watcher: classified acceptances and reasoned outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.adapters.store.queue.repository import DueRecipient, Outcome, RecipientStatus
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.model import RiskClass
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.core.surge import DeliveryOutcome, MessageAccepted
from hrmonitor.services.surge.traffic import TrafficFeed

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces" / "own"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class RecordingWatcher:
    """Stands in for SurgeWatcher's two event methods and keeps what it was told."""

    def __init__(self) -> None:
        self.accepted: list[MessageAccepted] = []
        self.outcomes: list[DeliveryOutcome] = []

    def message_accepted(self, event: MessageAccepted) -> None:
        self.accepted.append(event)

    def delivery_outcome(self, event: DeliveryOutcome) -> None:
        self.outcomes.append(event)


def feed() -> tuple[TrafficFeed, RecordingWatcher]:
    watcher = RecordingWatcher()
    return TrafficFeed(watcher, load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))), watcher  # type: ignore[arg-type]


def submission(data: bytes, mail_from: str) -> Submission:
    return Submission("contoso", "127.0.0.5", "client.test", mail_from, ("x@rcpt.test",), data, NOW)


DECISION = RouteDecision("high-risk", RiskClass.HIGH, (), {"spam_score": 7.5})


def test_a_dsn_is_classified_at_acceptance_and_its_failures_reach_the_watcher() -> None:
    traffic, watcher = feed()
    received = b"Received: from client.test ([127.0.0.5]) by relay.test; Sat, 28 Nov 2026\r\n"
    data = received + (CORPUS / "sendmail_01.eml").read_bytes()
    assert traffic.accepted(submission(data, ""), DECISION) in ("dsn", "nonstandard-bounce")
    [event] = watcher.accepted
    assert event.kind in ("dsn", "nonstandard-bounce")
    assert event.failed, "the DSN's failed recipients are counted"
    assert event.sender == ""
    assert event.sender_domain  # the From domain stands in for the null sender
    assert event.spam_score == 7.5
    assert event.hops == 1  # the listener's Received header


def test_ordinary_mail_is_kind_none() -> None:
    traffic, watcher = feed()
    data = (CORPUS / "ordinary_01.eml").read_bytes()
    assert traffic.accepted(submission(data, "a@contoso.test"), DECISION) == "none"
    assert watcher.accepted[0].failed == ()
    assert watcher.accepted[0].sender_domain == "contoso.test"


def recipient(mail_from: str = "a@contoso.test") -> DueRecipient:
    return DueRecipient(
        1, "m1", "gone@rcpt.test", "rcpt.test", 0, mail_from, "normal", "normal",
        NOW, 100, False, "contoso",
    )  # fmt: skip


def outcome(status: RecipientStatus, code: int, reply: str) -> Outcome:
    return Outcome(1, "m1", status, NOW, "normal", source_ip="127.0.0.10", code=code, reply=reply)


def test_a_user_unknown_reply_is_a_hard_userunknown_outcome() -> None:
    traffic, watcher = feed()
    traffic.outcome(recipient(), outcome(RecipientStatus.BOUNCED, 550, "5.1.1 no such user"))
    [event] = watcher.outcomes
    assert (event.reason, event.hard, event.source_ip) == ("userunknown", True, "127.0.0.10")
    assert event.tenant == "contoso"
    assert not event.bounce


def test_a_blocklist_deferral_is_soft_and_names_blocking() -> None:
    traffic, watcher = feed()
    reply = "4.7.1 Client host [127.0.0.10] blocked using bl.test"
    traffic.outcome(recipient(), outcome(RecipientStatus.DEFERRED, 451, reply))
    [event] = watcher.outcomes
    assert event.hard is False
    assert event.reason in ("blocked", "badreputation")


def test_a_delivery_is_delivered_and_a_dsn_delivery_is_marked_as_a_bounce() -> None:
    traffic, watcher = feed()
    traffic.outcome(recipient(""), outcome(RecipientStatus.DELIVERED, 250, "2.0.0 ok"))
    [event] = watcher.outcomes
    assert (event.reason, event.hard, event.bounce) == ("delivered", False, True)


async def test_off_loop_classification_tells_the_watcher_and_returns_the_kind() -> None:
    traffic, watcher = feed()
    data = (CORPUS / "sendmail_01.eml").read_bytes()
    try:
        kind = await traffic.accepted_off_loop(submission(data, ""), DECISION)
    finally:
        traffic.close()
    assert kind in ("dsn", "nonstandard-bounce")
    [event] = watcher.accepted
    assert event.kind == kind
    assert event.failed


async def test_a_classification_past_its_deadline_leaves_the_message_unclassified() -> None:
    watcher = RecordingWatcher()
    patterns = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))
    traffic = TrafficFeed(watcher, patterns, deadline=0.0)  # type: ignore[arg-type]
    data = (CORPUS / "sendmail_01.eml").read_bytes()
    try:
        assert await traffic.accepted_off_loop(submission(data, ""), DECISION) is None
    finally:
        traffic.close()
    assert watcher.accepted == []
