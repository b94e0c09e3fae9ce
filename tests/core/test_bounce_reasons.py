"""Common real-world diagnostics (Postfix, Exim, Gmail, Outlook, Yahoo, AOL) -> taxonomy reason.

Each row is a reply as providers document or send it; the reason is what
practitioners (Sisimai's taxonomy, docs/mail-facts.md) call it. Status comes
from the text where the report gives none, as for a text bounce.
"""

from __future__ import annotations

import pytest

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.bounce.reason import Reason, reason_for
from hrmonitor.core.bounce.recipient import status_of

PATTERNS = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))

CASES = [
    (
        "550 5.1.1 <x@y.example>: Recipient address rejected: User unknown in"
        " virtual mailbox table",
        "userunknown",
    ),
    ("552 5.2.2 Mailbox full", "mailboxfull"),
    (
        "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "blocked",
    ),
    ("554 5.7.1 <x@y.example>: Relay access denied", "norelaying"),
    ("550 5.7.1 Message rejected as spam by Content Filtering.", "spamdetected"),
    (
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to"
        " unexpected volume or user complaints",
        "blocked",
    ),
    ("550-5.1.1 The email account that you tried to reach does not exist.", "userunknown"),
    ("550-5.2.1 The email account that you tried to reach is disabled.", "suspend"),
    ("452-4.2.2 The email account that you tried to reach is over quota.", "mailboxfull"),
    (
        "550-5.7.1 Our system has detected that this message is likely unsolicited mail.",
        "spamdetected",
    ),
    (
        "550 5.7.1 Unauthenticated email from example.com is not accepted due"
        " to domain's DMARC policy",
        "authfailure",
    ),
    ("550 Requested action not taken: mailbox unavailable", "userunknown"),
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "userunknown"),
    ("554 5.4.14 Hop count exceeded - possible mail loop", "networkerror"),
    ("550 5.7.606 Access denied, banned sending IP [192.0.2.1]", "blocked"),
    (
        "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
        "blocked",
    ),
    ("421 4.7.28 Gmail has detected an unusual rate of unsolicited mail", "spamdetected"),
    ("552 5.3.4 Message size exceeds fixed limit", "emailtoolarge"),
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "userunknown",
    ),
    ("550 5.1.8 Access denied, bad outbound sender", "rejected"),
    ("553 5.1.8 <x@y.example>: Sender address rejected: Domain not found", "rejected"),
    ("450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]", "requireptr"),
    (
        "550 5.7.25 The IP address sending this message does not have a PTR record setup",
        "requireptr",
    ),
    ("554 5.7.1 Rejected: Virus found", "virusdetected"),
    ("550 5.7.1 Email rejected per SPAM policy", "spamdetected"),
    (
        "554 delivery error: dd Sorry, your message cannot be delivered. This"
        " mailbox is disabled (554.30).",
        "suspend",
    ),
    (
        "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1,"
        " because the ip is in Spamhaus's list",
        "blocked",
    ),
    ("550 No such domain", "hostunknown"),
    (
        "Host or domain name not found. Name service error for"
        " name=example.invalid type=A: Host not found",
        "hostunknown",
    ),
    ("connect to mx.example.com[192.0.2.1]:25: Connection timed out", "expired"),
]


@pytest.mark.parametrize(("diagnostic", "reason"), CASES, ids=[str(n) for n in range(len(CASES))])
def test_common_diagnostic_gets_the_practitioners_reason(diagnostic: str, reason: str) -> None:
    status = status_of("", diagnostic, "failed") or "5.0.0"
    assert reason_for(status, diagnostic, PATTERNS, action="failed") == Reason(reason)
