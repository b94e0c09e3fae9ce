"""What a remote reply speaks for: destination scopes and blocklist mentions across destinations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.feedback.mentions import MentionTracker
from hrmonitor.core.feedback.replies import (
    ProviderPause,
    RemoteReply,
    destination_scope,
    match_reply,
)
from hrmonitor.core.feedback.rules import layer_feedback_files

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("gmail-smtp-in.l.google.com", "google"),
        ("mx1.mail.yahoo.com.", "yahoo"),
        ("contoso-com.mail.protection.outlook.com", "microsoft"),
        ("mx.rcpt.test", "rcpt.test"),
        ("MX2.Mail.Example.NET", "example.net"),
        ("mx.example.co.uk", "example.co.uk"),
        ("mail.example.de", "example.de"),
        ("example.org", "example.org"),
        ("127.0.0.50", "127.0.0.50"),
        ("[192.0.2.7]", "192.0.2.7"),
        ("::1", "::1"),
    ],
)
def test_a_reply_speaks_for_its_provider_or_only_for_the_mxs_own_domain(
    host: str, scope: str
) -> None:
    assert destination_scope(host) == scope


def test_two_organisations_behind_generic_mxs_are_two_destinations() -> None:
    assert destination_scope("mx.one.test") != destination_scope("mx.two.test")
    assert destination_scope("mx1.one.test") == destination_scope("mx2.one.test")


def test_a_generic_rules_pause_is_for_the_replying_destination_not_for_generic() -> None:
    rules = layer_feedback_files(
        [("mine.toml", {"patterns": {"slow-down": {
            "provider": "generic", "code": "^421$", "action": "pause", "duration": "1h",
        }}})]
    )  # fmt: skip
    reply = RemoteReply(421, "", "try later", "192.0.2.1", "mx.example.net", T0)
    [pause] = match_reply(reply, "generic", rules, destination_scope(reply.destination_host))
    assert isinstance(pause, ProviderPause)
    assert pause.provider == "example.net"


def test_one_destination_naming_a_blocklist_again_and_again_is_never_a_spread() -> None:
    tracker = MentionTracker(destinations=3, window=timedelta(hours=1))
    for minute in range(100):
        assert tracker.observe("192.0.2.1", "evil.test", T0 + timedelta(minutes=minute)) is None


def test_three_independent_destinations_within_the_window_are_a_spread() -> None:
    tracker = MentionTracker(destinations=3, window=timedelta(hours=1))
    assert tracker.observe("192.0.2.1", "a.test", T0) is None
    assert tracker.observe("192.0.2.2", "b.test", T0) is None  # another IP counts apart
    assert tracker.observe("192.0.2.1", "b.test", T0 + timedelta(minutes=10)) is None
    spread = tracker.observe("192.0.2.1", "google", T0 + timedelta(minutes=50))
    assert spread is not None
    assert spread.destinations == ("a.test", "b.test", "google")
    assert spread.observed_at == T0 + timedelta(minutes=50)


def test_destinations_older_than_the_window_do_not_count() -> None:
    tracker = MentionTracker(destinations=3, window=timedelta(hours=1))
    tracker.observe("192.0.2.1", "a.test", T0)
    tracker.observe("192.0.2.1", "b.test", T0 + timedelta(minutes=30))
    assert tracker.observe("192.0.2.1", "c.test", T0 + timedelta(minutes=61)) is None
    assert tracker.observe("192.0.2.1", "a.test", T0 + timedelta(minutes=62)) is not None


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 300)), max_size=40))
def test_a_spread_always_names_enough_distinct_destinations_seen_within_the_window(
    replies: list[tuple[str, int]],
) -> None:
    tracker = MentionTracker(destinations=3, window=timedelta(hours=1))
    seen: list[tuple[str, datetime]] = []
    for scope, minute in sorted(replies, key=lambda r: r[1]):
        at = T0 + timedelta(minutes=minute)
        seen.append((scope, at))
        spread = tracker.observe("192.0.2.1", scope, at)
        recent = {s for s, when in seen if at - timedelta(hours=1) < when <= at}
        assert (spread is not None) == (len(recent) >= 3)
        if spread is not None:
            assert set(spread.destinations) == recent
