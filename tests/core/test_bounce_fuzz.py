"""Hypothesis fuzzing of the bounce classifier: any bytes give a report, never an exception.

``classify`` is the unguarded parser under ``classify_message`` (which adds a
last-resort guard for recursion and memory exhaustion): fuzzing it proves the
parser itself raises nothing. The quick tests run always; the ``fuzz`` ones
run with a larger budget in CI's bounded fuzz job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.bounce.classify import BounceKind, BounceReport, classify

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"
MESSAGES = sorted(
    path.read_bytes() for path in CORPUS.rglob("*") if path.suffix in (".txt", ".eml")
)
PATTERNS = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Fragments that steer mutations into the parser's interesting corners.
TOKENS = [
    b"\n",
    b"\r\n",
    b"\r",
    b"\n\n",
    b"--",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=",
    b"Content-Type: message/delivery-status\n\n",
    b"Content-Type: message/global-delivery-status\n\n",
    b"Content-Type: message/rfc822\n\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"charset=",
    b"=?utf-8?b?",
    b"?=",
    b"Final-Recipient: utf-8; \\x{",
    b"Status: 5.",
    b"X-Failed-Recipients: ",
    b"<a@b.example>:",
    b"\xff\xfe",
    b"\x00",
]


def _check(report: BounceReport) -> None:
    assert isinstance(report, BounceReport)
    assert report.kind in BounceKind
    for recipient in report.recipients:
        assert recipient.address
        assert recipient.status[:1] in ("2", "4", "5")
        assert recipient.hard == (
            recipient.action == "failed"
            and recipient.status.startswith("5")
            and recipient.reason in ("userunknown", "hostunknown", "hasmoved", "notaccept")
        )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus message with a few slices cut, duplicated or overwritten with tokens/noise."""
    raw = bytearray(draw(st.sampled_from(MESSAGES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw)))
        size = draw(st.integers(0, 200))
        action = draw(st.sampled_from(["cut", "insert", "duplicate", "noise"]))
        if action == "cut":
            del raw[at : at + size]
        elif action == "insert":
            raw[at:at] = draw(st.sampled_from(TOKENS))
        elif action == "duplicate":
            raw[at:at] = raw[at : at + size]
        else:
            raw[at : at + size] = draw(st.binary(max_size=size))
    return bytes(raw)


@QUICK
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_a_report(raw: bytes) -> None:
    _check(classify(raw, PATTERNS))


@QUICK
@given(mutated())
def test_mutated_corpus_messages_give_a_report(raw: bytes) -> None:
    _check(classify(raw, PATTERNS))


@QUICK
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join))
def test_token_soup_gives_a_report(raw: bytes) -> None:
    _check(classify(raw, PATTERNS))


def test_deeply_nested_multiparts_are_capped() -> None:
    """Ten thousand nested multiparts neither recurse without bound nor raise."""
    depth = 10_000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level)
        for level in range(depth)
    )
    report = classify(head + b"Content-Type: text/plain\n\nhello\n", PATTERNS)
    assert report.kind is BounceKind.NONE


@pytest.mark.fuzz
@LONG
@given(st.one_of(st.binary(max_size=65536), mutated()))
def test_fuzz_long_run_any_input_gives_a_report(raw: bytes) -> None:
    _check(classify(raw, PATTERNS))


@pytest.mark.parametrize(
    "body",
    [
        b"-" * 60_000,  # a marker-like line: once quadratic in the marker regex
        b"<a@b.example>: " + b"mail from " * 6_000,  # many starts for a wildcard pattern
        b"<a@b.example>:" + b" " * 60_000 + b"x",
        b"a@" * 100_000,
        b"".join(b"<u%d@b.example>:\n" % i for i in range(20_000)),
    ],
    ids=["dashes", "wildcard-starts", "spaces", "at-signs", "many-addresses"],
)
def test_pathological_lines_are_classified_not_hung(body: bytes) -> None:
    """Inputs that once made a regex backtrack quadratically finish (pytest-timeout guards)."""
    raw = b"From: MAILER-DAEMON@x.example\nSubject: Undelivered Mail\n\n" + body + b"\n"
    _check(classify(raw, PATTERNS))


def test_long_folded_header_is_unfolded_in_linear_time() -> None:
    """Two hundred thousand continuation lines: unfolding must not copy the value each time."""
    raw = b"Subject: a\n" + b" x\n" * 200_000 + b"\nbody\n"
    assert classify(raw, PATTERNS).kind is BounceKind.NONE


def test_a_hundred_thousand_header_fields_are_capped() -> None:
    """Header look-ups scan a bounded list, whatever the header block holds."""
    raw = b"".join(b"X-H%d: v\n" % i for i in range(100_000)) + b"From: MAILER-DAEMON@x\n\nhi\n"
    assert classify(raw, PATTERNS).kind is BounceKind.NONE
