"""Bounce classification behaviour on small hand-built messages."""

from __future__ import annotations

import pytest

from hrmonitor.core.bounce.classify import BounceKind, classify_message
from hrmonitor.core.bounce.dsn import parse_delivery_status
from hrmonitor.core.bounce.reason import NO_PATTERNS, Reason, is_hard, reason_for

DSN = b"""\
From: MAILER-DAEMON@mx.example.org
To: bob@contoso.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <report-1@mx.example.org>
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Sorry.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Original-Envelope-Id: ENV+2B1

Final-Recipient: rfc822; a@example.org
Action: failed
Status: %(status)s
Diagnostic-Code: smtp; %(diagnostic)s

--b
Content-Type: text/rfc822-headers

From: bob@contoso.example
Message-ID: <orig-1@contoso.example>

--b--
"""


def dsn(status: str = "5.1.1", diagnostic: str = "550 5.1.1 User unknown") -> bytes:
    return DSN % {b"status": status.encode(), b"diagnostic": diagnostic.encode()}


def test_dsn_recipient_carries_action_status_reason_and_hardness() -> None:
    report = classify_message(dsn())
    assert report.kind is BounceKind.DSN
    [recipient] = report.recipients
    assert (recipient.address, recipient.action, recipient.status) == (
        "a@example.org",
        "failed",
        "5.1.1",
    )
    assert recipient.reason is Reason.USERUNKNOWN
    assert recipient.hard


def test_dsn_exposes_ids_for_backscatter_matching() -> None:
    """Report id, the bounced message's Message-ID and the xtext-decoded ENVID."""
    report = classify_message(dsn())
    assert report.message_id == "<report-1@mx.example.org>"
    assert report.original_message_id == "<orig-1@contoso.example>"
    assert report.original_envelope_id == "ENV+1"
    assert report.reporting_mta == "mx.example.org"


def test_generic_status_is_refined_by_the_diagnostic_code_and_text() -> None:
    """Status 5.0.0 with a 5.7.1 diagnostic: the status becomes 5.7.1, the text names the cause."""
    patterns_free = classify_message(dsn("5.0.0", "550 5.7.1 blocked using zen.spamhaus.org"))
    assert patterns_free.recipients[0].status == "5.7.1"
    assert patterns_free.recipients[0].reason is Reason.SECURITYERROR  # weak code default
    assert not patterns_free.recipients[0].hard


def test_temporary_status_is_soft_even_for_an_unknown_user() -> None:
    report = classify_message(dsn("4.1.1", "450 4.1.1 try later"))
    assert report.recipients[0].reason is Reason.USERUNKNOWN
    assert not report.recipients[0].hard


def test_action_alone_does_not_make_a_failure_hard() -> None:
    """A failed mailbox-full is soft: hardness comes from status and reason, not Action."""
    report = classify_message(dsn("5.2.2", "552 5.2.2 Mailbox full"))
    assert report.recipients[0].action == "failed"
    assert report.recipients[0].reason is Reason.MAILBOXFULL
    assert not report.recipients[0].hard


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("5.1.1", Reason.USERUNKNOWN),
        ("5.1.2", Reason.HOSTUNKNOWN),
        ("5.1.10", Reason.NOTACCEPT),  # without text saying otherwise
        ("5.2.2", Reason.MAILBOXFULL),
        ("5.3.4", Reason.EMAILTOOLARGE),
        ("4.4.7", Reason.EXPIRED),
        ("5.7.26", Reason.AUTHFAILURE),
        ("5.7.25", Reason.REQUIREPTR),
        ("5.0.0", Reason.UNDEFINED),
        ("2.0.0", Reason.DELIVERED),
    ],
)
def test_status_codes_map_to_the_taxonomy(status: str, reason: Reason) -> None:
    assert reason_for(status, "", NO_PATTERNS) is reason


def test_hard_needs_a_permanent_status_and_an_address_reason() -> None:
    assert is_hard("5.1.1", Reason.USERUNKNOWN)
    assert not is_hard("4.1.1", Reason.USERUNKNOWN)
    assert not is_hard("5.7.1", Reason.BLOCKED)


def test_delivery_status_groups_recipients_without_blank_lines_between() -> None:
    status = parse_delivery_status(
        "Reporting-MTA: dns; mx\n\n"
        "Final-Recipient: rfc822; a@x.example\nAction: failure\nStatus: 5.1.1\n"
        "Final-Recipient: rfc822; <b@x.example>\nAction: delayed\nStatus: 4.4.1\n"
    )
    assert [(r.address, r.action, r.status) for r in status.recipients] == [
        ("a@x.example", "failed", "5.1.1"),
        ("b@x.example", "delayed", "4.4.1"),
    ]


def test_delivery_status_prefers_the_original_internet_address() -> None:
    """An X.400 or rewritten Final-Recipient yields to the rfc822 Original-Recipient."""
    status = parse_delivery_status(
        "Original-Recipient: rfc822; user@example.uk\n"
        "Final-Recipient: x400; /S=user/PRMD=UK.AC/\nAction: failed\nStatus: 5.0.0\n"
    )
    assert status.recipients[0].address == "user@example.uk"


def test_global_delivery_status_decodes_utf8_addresses() -> None:
    status = parse_delivery_status(
        "Final-Recipient: utf-8; jos\\x{E9}@example.com\nAction: failed\nStatus: 5.1.1\n"
    )
    assert status.recipients[0].address == "josé@example.com"


def test_success_dsn_is_a_dsn_without_failures() -> None:
    report = classify_message(dsn("2.0.0", "250 2.0.0 Ok").replace(b"failed", b"delivered"))
    assert report.kind is BounceKind.DSN
    assert report.recipients[0].reason is Reason.DELIVERED
    assert report.failures == ()


def test_forwarded_bounce_is_not_a_bounce() -> None:
    raw = (
        b"From: bob@contoso.example\nTo: help@contoso.example\nSubject: Fwd: bounce\n"
        b'Content-Type: multipart/mixed; boundary="o"\n\n--o\nContent-Type: text/plain\n\n'
        b"why?\n--o\nContent-Type: message/rfc822\n\n" + dsn() + b"\n--o--\n"
    )
    assert classify_message(raw).kind is BounceKind.NONE


def test_mail_daemon_bounce_wins_over_auto_submitted() -> None:
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\nTo: bob@contoso.example\n"
        b"Subject: Mail delivery failed\nAuto-Submitted: auto-replied\n"
        b"X-Failed-Recipients: gone@example.org\n\n"
        b"The following address(es) failed:\n\n  gone@example.org\n    550 5.1.1 unknown\n"
    )
    report = classify_message(raw)
    assert report.kind is BounceKind.NONSTANDARD_BOUNCE
    assert [r.address for r in report.failures] == ["gone@example.org"]
    assert report.failures[0].status == "5.1.1"


def test_auto_reply_without_bounce_structure_is_an_autoreply() -> None:
    raw = (
        b"From: dave@example.com\nTo: bob@contoso.example\nSubject: Away\n"
        b"Auto-Submitted: auto-replied\n\nBack on Monday.\n"
    )
    assert classify_message(raw).kind is BounceKind.AUTOREPLY


def test_read_receipt_is_an_mdn_and_a_sieve_reject_is_a_bounce() -> None:
    template = (
        b"From: MAILER-DAEMON@mx.example.org\nSubject: Rejected\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="m"\n\n'
        b"--m\nContent-Type: text/plain\n\nYour message was rejected.\n"
        b"--m\nContent-Type: message/disposition-notification\n\n"
        b"Final-Recipient: rfc822; carol@example.org\nDisposition: %s\n--m--\n"
    )
    read = classify_message(template % b"manual-action/MDN-sent-manually; displayed")
    assert read.kind is BounceKind.MDN
    rejected = classify_message(template % b"automatic-action/MDN-sent-automatically; deleted")
    assert rejected.kind is BounceKind.NONSTANDARD_BOUNCE
    assert [r.address for r in rejected.failures] == ["carol@example.org"]


def test_bounce_sender_and_recipient_are_never_failed_recipients() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: bob@contoso.example\n"
        b"Subject: failure notice\n\nHi. This is the qmail-send program at mx.example.org.\n"
        b"Your message from bob@contoso.example could not be delivered.\n\n"
        b"<x@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n"
    )
    report = classify_message(raw)
    assert [r.address for r in report.failures] == ["x@example.org"]


def test_ordinary_mail_is_none() -> None:
    raw = b"From: ann@example.com\nTo: bob@contoso.example\nSubject: Lunch?\n\nNoon, usual place.\n"
    assert classify_message(raw).kind is BounceKind.NONE


def test_huge_input_is_capped_not_refused() -> None:
    """Tens of megabytes of garbage after a DSN still give the DSN, quickly."""
    report = classify_message(dsn() + b"x" * (40 * 1024 * 1024))
    assert report.kind is BounceKind.DSN


def _nameless_bounce(subject: bytes, original_to: bytes) -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.example.org\nTo: bob@contoso.example\nSubject: "
        + subject
        + b'\nContent-Type: multipart/mixed; boundary="n"\n\n--n\nContent-Type: text/plain\n\n'
        b"Your message could not be delivered.\n--n\nContent-Type: message/rfc822\n\n"
        b"From: bob@contoso.example\nTo: " + original_to + b"\nSubject: hi\n\nhi\n--n--\n"
    )


def test_bounce_naming_no_one_in_its_text_falls_back_to_subject_then_single_original_to() -> None:
    by_subject = classify_message(_nameless_bounce(b"Delivery failure to ann@example.org", b"x"))
    assert [r.address for r in by_subject.failures] == ["ann@example.org"]
    by_original = classify_message(_nameless_bounce(b"Undeliverable", b"Cy <cy@example.org>"))
    assert [r.address for r in by_original.failures] == ["cy@example.org"]
    several = classify_message(_nameless_bounce(b"Undeliverable", b"a@example.org, b@example.org"))
    assert several.kind is BounceKind.NONSTANDARD_BOUNCE
    assert several.failures == ()


def test_auto_reply_attaching_the_original_is_not_returned_mail() -> None:
    raw = (
        b"From: dave@example.com\nTo: bob@contoso.example\nSubject: Away\n"
        b'Auto-Submitted: auto-replied\nContent-Type: multipart/mixed; boundary="a"\n\n'
        b"--a\nContent-Type: text/plain\n\nI am away; mail could not be delivered to me now.\n"
        b"--a\nContent-Type: message/rfc822\n\n"
        b"From: bob@contoso.example\nTo: dave@example.com\n\nhi\n"
        b"--a--\n"
    )
    assert classify_message(raw).kind is BounceKind.AUTOREPLY
