"""RFC 3464 DSNs: structure, per-recipient fields, the original headers attached."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from hrmonitor.core.delivery.dsn import FailedRecipient, build_dsn, header_value, original_headers

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ORIGINAL = (
    b"From: a@contoso.test\r\nTo: b@rcpt.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@contoso.test>\r\n\r\nbody line\r\n"
)


def _dsn(original: bytes = ORIGINAL, address: str = "b@rcpt.test") -> bytes:
    return build_dsn(
        original=original,
        sender="a@contoso.test",
        recipients=[
            FailedRecipient(
                address=address,
                status="5.1.1",
                diagnostic="550 5.1.1 no such\r\n user",
                remote_mta="mx.rcpt.test",
                last_attempt=T0,
            )
        ],
        reporting_mta="relay.example.net",
        arrived_at=T0,
        now=T0,
        message_id="dsn1@relay.example.net",
    )


def test_dsn_is_a_multipart_report_with_delivery_status_and_original_headers() -> None:
    raw = _dsn()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"].addresses[0].addr_spec == "a@contoso.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status_part = next(
        p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status"
    )
    text = status_part.as_bytes().decode()
    for field in (
        "Reporting-MTA: dns; relay.example.net",
        "Arrival-Date:",
        "Final-Recipient: rfc822; b@rcpt.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.rcpt.test",
        "Diagnostic-Code: smtp; 550 5.1.1 no such user",
    ):
        assert field in text
    assert b"Subject: hello\r\nMessage-ID: <m1@contoso.test>\r\n" in raw
    assert b"body line" not in raw


def test_every_line_of_the_dsn_ends_in_crlf() -> None:
    raw = _dsn(original=b"Subject: bare lf\nX: y\n\nbody\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"Subject: bare lf\r\nX: y\r\n" in raw


def test_non_ascii_recipient_uses_the_rfc_6533_global_types() -> None:
    raw = _dsn(address="jörg@bücher.test")
    assert b"message/global-delivery-status" in raw
    assert "Final-Recipient: utf-8; jörg@bücher.test".encode() in raw


def test_header_helpers_unfold_and_stop_at_the_body() -> None:
    msg = b"Subject: a\r\n b\r\nMessage-ID: <x@y>\r\n\r\nSubject: body\r\n"
    assert header_value(msg, "subject") == "a b"
    assert header_value(msg, "message-id") == "<x@y>"
    assert header_value(msg, "missing") == ""
    assert original_headers(msg) == b"Subject: a\r\n b\r\nMessage-ID: <x@y>\r\n"
