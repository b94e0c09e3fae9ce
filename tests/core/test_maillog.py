"""The per-message log lines: Postfix's field shapes where the fields overlap."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hrmonitor.core.delivery import maillog

# pflogsumm's own pattern for a delivery line (pflogsumm.pl, "to=<...>, relay=...").
PFLOGSUMM_DELIVERY = re.compile(
    r" to=<([^>]*)>, (?:orig_to=<[^>]*>, )?relay=([^,]+), (?:conn_use=[^,]+, )?"
    r"delay=([^,]+), (?:delays=[^,]+, )?(?:dsn=[^,]+, )?status=(\S+)"
)


def test_delays_are_written_as_postfix_writes_them() -> None:
    assert [maillog.seconds(v) for v in (0.004, 0.09, 1.2, 2.456, 99.999, 100.4, 6000.0)] == [
        "0", "0.09", "1.2", "2.45", "99.99", "100", "6000",
    ]  # fmt: skip


def test_an_attempt_line_has_postfix_fields_first_and_ours_after() -> None:
    line = maillog.attempt(
        "4ab9", to="bob@x.test", relay_to=maillog.relay("mx.x.test", "192.0.2.7", 25),
        delay=1.234, dsn="2.0.0", status="sent", reason="250 2.0.0 Ok: queued as 77",
        pool="normal", source="198.51.100.10", attempts=1,
    )  # fmt: skip
    assert line.text == (
        "4ab9: to=<bob@x.test>, relay=mx.x.test[192.0.2.7]:25, delay=1.23, dsn=2.0.0, "
        "status=sent (250 2.0.0 Ok: queued as 77), pool=normal, source=198.51.100.10, "
        "attempts=1"
    )
    match = PFLOGSUMM_DELIVERY.search(" " + line.text)
    assert match is not None
    assert match.groups() == ("bob@x.test", "mx.x.test[192.0.2.7]:25", "1.23", "sent")
    assert line.as_json() == {
        "queue_id": "4ab9", "event": "attempt", "to": "bob@x.test",
        "relay": "mx.x.test[192.0.2.7]:25", "delay": 1.234, "dsn": "2.0.0", "status": "sent",
        "reply": "250 2.0.0 Ok: queued as 77", "pool": "normal", "source": "198.51.100.10",
        "attempts": 1,
    }  # fmt: skip


def test_a_reply_cannot_break_the_line() -> None:
    line = maillog.attempt(
        "q", to="b@x.test", relay_to="none", delay=0.0, dsn="4.4.1", status="deferred",
        reason="451 first\r\nINFO forged: line", pool="p", source=None, attempts=2,
    )  # fmt: skip
    assert "\n" not in line.text
    assert "\r" not in line.text
    assert "status=deferred (451 first??INFO forged: line)" in line.text
    assert "source=none" in line.text


def test_accepted_line_combines_cleanup_and_qmgr_fields() -> None:
    line = maillog.accepted(
        "q1", mail_from="a@b.test", size=812, nrcpt=2, message_id="<m1@b.test>",
        client_ip="127.0.0.5", pool="high-risk", rules=["spam-score", "sender-domain-no-a-mx"],
    )  # fmt: skip
    assert line.text == (
        "q1: from=<a@b.test>, size=812, nrcpt=2, message-id=<m1@b.test>, "
        "client=unknown[127.0.0.5], pool=high-risk, rules=spam-score,sender-domain-no-a-mx"
    )
    assert line.as_json()["message_id"] == "m1@b.test"
    assert line.as_json()["from"] == "a@b.test"
    null = maillog.accepted(
        "q2", mail_from="", size=1, nrcpt=1, message_id="", client_ip="127.0.0.1",
        pool="high-risk", rules=[], dsn_of="q1",
        held_until=datetime(2026, 12, 7, 5, 0, tzinfo=UTC),
    )  # fmt: skip
    assert null.text == (
        "q2: from=<>, size=1, nrcpt=1, message-id=<>, client=local, pool=high-risk, "
        "rules=none, held-until=2026-12-07T05:00:00+00:00, dsn-of=q1"
    )


def test_rerouted_and_held_lines() -> None:
    moved = maillog.rerouted(
        "q", pool="high-risk", rules=["sender-domain-no-a-mx"], was="dns-unknown", held_until=None
    )
    assert moved.text == (
        "q: rerouted pool=high-risk reason=sender-domain-no-a-mx (was held: dns-unknown)"
    )
    until = datetime(2026, 12, 7, 5, 10, tzinfo=UTC)
    held = maillog.rerouted("q", pool="normal", rules=["dns-unknown"], was="", held_until=until)
    assert held.text == "q: held pool=normal reason=dns-unknown until=2026-12-07T05:10:00+00:00"


def test_expiry_names_the_lifetime_and_the_last_reason() -> None:
    reason = maillog.expiry_reason(
        timedelta(days=5), "queue lifetime exceeded; last error: pool high-risk has no eligible IP"
    )
    assert reason == "expired after 5d in queue, last reason: pool high-risk has no eligible IP"
