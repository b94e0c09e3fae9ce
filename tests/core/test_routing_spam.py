"""Spam scores from filter headers, trusted only from trusted filters; header stripping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.routing.spam_score import (
    client_is_trusted,
    header_fields,
    parse_score,
    spam_score,
    strip_header_fields,
    strip_untrusted_scores,
)

HEADERS = ("X-Spam-Score", "X-Spam-Status", "X-Rspamd-Score", "X-MS-Exchange-Organization-SCL")
TRUSTED = ("127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32")


@pytest.mark.parametrize(
    ("name", "value", "score"),
    [
        ("X-Spam-Status", "Yes, score=7.2 required=5.0 tests=BAYES_99", 7.2),
        ("X-Spam-Status", "No, score=-0.1 required=5.0", -0.1),
        ("X-Spam-Status", "Yes, hits=12.5 required=5.0", 12.5),
        ("X-Spam-Status", "No", None),
        ("X-Spam-Score", "7.2", 7.2),
        ("X-Spam-Score", " -1.5 (-)", -1.5),
        ("X-Rspamd-Score", "7.20 / 15.00", 7.2),
        ("X-MS-Exchange-Organization-SCL", "5", 5.0),
        ("X-MS-Exchange-Organization-SCL", "-1", -1.0),
        ("X-MS-Exchange-Organization-SCL", "12", None),
        ("X-MS-Exchange-Organization-SCL", "high", None),
    ],
)
def test_score_formats_of_spamassassin_rspamd_and_scl(
    name: str, value: str, score: float | None
) -> None:
    assert parse_score(name, value) == score


def test_highest_configured_score_wins_from_a_trusted_filter() -> None:
    fields = [("X-Spam-Score", "2.0"), ("X-Rspamd-Score", "8.5"), ("X-Other", "99")]
    result = spam_score(fields, HEADERS, "127.0.0.1", TRUSTED)
    assert (result.score, result.header, result.trusted) == (8.5, "X-Rspamd-Score", True)


def test_only_configured_headers_are_read() -> None:
    result = spam_score([("X-Rspamd-Score", "9")], ("X-Spam-Score",), "127.0.0.1", TRUSTED)
    assert result.score is None


def test_score_from_untrusted_client_does_not_count_and_is_reported_ignored() -> None:
    result = spam_score([("X-Spam-Score", "1.0")], HEADERS, "192.0.2.7", TRUSTED)
    assert result.score is None
    assert result.ignored == ("X-Spam-Score",)


@pytest.mark.parametrize(
    ("ip", "trusted"),
    [
        ("10.1.2.3", True),
        ("2001:db8::5", True),
        ("11.0.0.1", False),
        ("junk", False),
        (None, False),
    ],
)
def test_trusted_filter_networks(ip: str | None, trusted: bool) -> None:
    assert client_is_trusted(ip, TRUSTED) is trusted


MESSAGE = (
    b"Received: from a\r\n\tby b\r\n"
    b"X-Spam-Score: 0.1\r\n"
    b"Subject: hi\r\n"
    b"x-spam-status: No, score=0.1\r\n  required=5.0\r\n"
    b"\r\n"
    b"X-Spam-Score: body text, not a header\r\n"
)


def test_strip_removes_named_fields_with_continuations_and_keeps_the_rest_byte_for_byte() -> None:
    stripped = strip_header_fields(MESSAGE, ["X-Spam-Score", "X-Spam-Status"])
    assert stripped == (
        b"Received: from a\r\n\tby b\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"X-Spam-Score: body text, not a header\r\n"
    )


def test_nothing_to_strip_is_the_same_bytes_not_a_copy() -> None:
    message = b"Subject: hi\r\n\r\n" + b"x" * 100_000 + b"\r\n"
    assert strip_untrusted_scores(message, "192.0.2.1", HEADERS, TRUSTED) is message


def test_untrusted_client_gets_score_headers_stripped_trusted_keeps_them() -> None:
    assert strip_untrusted_scores(MESSAGE, "127.0.0.1", HEADERS, TRUSTED) == MESSAGE
    stripped = strip_untrusted_scores(MESSAGE, "192.0.2.1", HEADERS, TRUSTED)
    assert all(n.lower() not in {h.lower() for h in HEADERS} for n, _ in header_fields(stripped))


def test_header_fields_unfold_and_stop_at_the_body() -> None:
    fields = header_fields(MESSAGE)
    assert fields[0] == ("Received", "from a\tby b")
    assert ("x-spam-status", "No, score=0.1  required=5.0") in fields
    assert len(fields) == 4


_score_text = st.floats(-20, 50, allow_nan=False).map(lambda f: f"{f:.1f}")
_untrusted = (
    st.integers(0, 2**32 - 1)
    .map(lambda n: f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}")
    .filter(lambda ip: not client_is_trusted(ip, TRUSTED))
)


@given(st.lists(st.tuples(st.sampled_from(HEADERS), _score_text), max_size=4), _untrusted)
def test_property_score_from_untrusted_client_never_counts(
    fields: list[tuple[str, str]], client: str
) -> None:
    assert spam_score(fields, HEADERS, client, TRUSTED).score is None
    message = b"".join(f"{n}: {v}\r\n".encode() for n, v in fields) + b"\r\nbody\r\n"
    stored = strip_untrusted_scores(message, client, HEADERS, TRUSTED)
    assert spam_score(header_fields(stored), HEADERS, "127.0.0.1", TRUSTED).score is None
    assert stored.endswith(b"\r\nbody\r\n")


_names = st.sampled_from(["Subject", "X-Spam-Score", "X-Spam-Status", "Received", "X-Rspamd-Score"])
_values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)


@given(
    st.lists(st.tuples(_names, _values, st.booleans()), max_size=8),
    st.binary(max_size=40),
    st.booleans(),
)
def test_property_strip_removes_exactly_the_named_fields_and_keeps_the_body(
    fields: list[tuple[str, str, bool]], body: bytes, with_body: bool
) -> None:
    """Folded or not, with or without a body: only the named fields go, in order, body intact."""
    parts = []
    for name, value, folded in fields:
        parts.append(f"{name}: {value}\r\n\t{value}\r\n" if folded else f"{name}: {value}\r\n")
    head = "".join(parts).encode()
    message = head + b"\r\n" + body if with_body else head
    drop = {"x-spam-score", "x-spam-status"}
    stripped = strip_header_fields(message, ["X-Spam-Score", "x-spam-status"])
    kept = [(n, v) for n, v in header_fields(message) if n.lower() not in drop]
    assert list(header_fields(stripped)) == kept
    if with_body:
        assert stripped.endswith(b"\r\n" + body)
