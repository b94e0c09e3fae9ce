"""Our own DSNs (core.delivery.dsn.build_dsn, the relay's) read back by the bounce classifier.

A property test across the two cores: whatever recipients, codes and
diagnostics the relay reports, the classifier sees a DSN naming exactly those
recipients with those statuses, and finds the bounced message's Message-ID.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.bounce.classify import BounceKind, classify_message
from hrmonitor.core.delivery.dsn import FailedRecipient, build_dsn

PATTERNS = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))
ORIGINAL = (
    b"From: bob@contoso.example\r\nTo: x@example.org\r\n"
    b"Message-ID: <m-1@contoso.example>\r\n\r\nhi\r\n"
)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

local_parts = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20).filter(
    lambda part: not part.startswith(".") and not part.endswith(".") and ".." not in part
)
statuses = st.sampled_from(["5.1.1", "5.2.2", "5.7.1", "4.4.7", "5.4.4", "5.7.26", "5.0.0"])
diagnostics = st.text(
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:;<>()[]-", max_size=120
)


@st.composite
def failures(draw: st.DrawFn) -> list[FailedRecipient]:
    names = draw(st.lists(local_parts, min_size=1, max_size=5, unique=True))
    return [
        FailedRecipient(
            address=f"{name}@example.org",
            status=draw(statuses),
            diagnostic=draw(diagnostics),
            remote_mta=draw(st.sampled_from(["", "mx.example.org"])),
        )
        for name in names
    ]


@settings(max_examples=60, deadline=None)
@given(failures())
def test_relay_dsns_classify_as_dsns_with_their_recipients_and_statuses(
    recipients: list[FailedRecipient],
) -> None:
    raw = build_dsn(
        original=ORIGINAL,
        sender="bob@contoso.example",
        recipients=recipients,
        reporting_mta="relay.example.net",
        arrived_at=NOW,
        now=NOW,
        message_id="dsn-1@relay.example.net",
    )
    report = classify_message(raw, patterns=PATTERNS)
    assert report.kind is BounceKind.DSN
    assert [(r.address, r.status[:1]) for r in report.failures] == [
        (r.address, r.status[:1]) for r in recipients
    ]
    for ours, theirs in zip(report.failures, recipients, strict=True):
        if theirs.status != "5.0.0":  # a generic status may be refined by the diagnostic
            assert ours.status == theirs.status
    assert report.original_message_id == "<m-1@contoso.example>"
    assert report.message_id == "<dsn-1@relay.example.net>"
