"""Remote replies -> evidence (rules/feedback.toml), providers, and the pause tracker."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.adapters.rule_files import feedback_file_problems, load_feedback_files
from hrmonitor.core.feedback.replies import (
    BlocklistMention,
    FeedbackAction,
    PauseTracker,
    ProviderPause,
    RemoteReply,
    match_reply,
    provider_for,
)
from hrmonitor.errors import RuleError

SHIPPED = Path(__file__).parents[2] / "rules" / "feedback.toml"
RULES = load_feedback_files([SHIPPED])
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
IP = "203.0.113.20"


def reply(
    code: int, enhanced: str, text: str, *, at: datetime = T0, own: bool = False
) -> RemoteReply:
    return RemoteReply(code, enhanced, text, IP, "mta5.am0.yahoodns.net", at, own)


YAHOO_BL = reply(
    553,
    "5.7.1",
    "[BL21] Connections will not be accepted from 203.0.113.20, because the ip is "
    "in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
)


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("gmail-smtp-in.l.google.com.", "google"),
        ("aspmx.l.google.com", "google"),
        ("mta7.am0.yahoodns.net", "yahoo"),
        ("mx-aol.mail.gm0.yahoodns.net", "aol"),
        ("hotmail-com.olc.protection.outlook.com", "microsoft"),
        ("contoso-com.mail.protection.outlook.com", "microsoft"),
        ("mx.rcpt.test", "generic"),
        ("notgoogle.com", "generic"),
    ],
)
def test_provider_from_mx_host_name(host: str, provider: str) -> None:
    assert provider_for(host) == provider


def test_yahoo_bl_reply_is_a_thresholded_pause_and_a_blocklist_mention() -> None:
    evidence = match_reply(YAHOO_BL, "yahoo", RULES)
    pause = next(e for e in evidence if isinstance(e, ProviderPause))
    assert (pause.ip, pause.provider, pause.rule) == (IP, "yahoo", "yahoo-bl")
    assert (pause.duration, pause.threshold, pause.window) == (
        timedelta(hours=2),
        5,
        timedelta(hours=1),
    )
    assert pause.observed_at == T0
    assert [e.rule for e in evidence if isinstance(e, BlocklistMention)] == ["blocklist-mention"]


def test_yahoo_pattern_does_not_apply_to_another_provider() -> None:
    evidence = match_reply(YAHOO_BL, "google", RULES)
    assert all(isinstance(e, BlocklistMention) for e in evidence)
    assert len(evidence) == 1


def test_yahoo_ts_deferral_pauses_at_once() -> None:
    evidence = match_reply(
        reply(421, "4.7.0", "[TSS04] Messages from 203.0.113.20 temporarily deferred"),
        "yahoo",
        RULES,
    )
    assert [(e.rule, e.threshold) for e in evidence if isinstance(e, ProviderPause)] == [
        ("yahoo-ts-deferral", 1)
    ]


def test_microsoft_reputation_deferral_is_a_slow_down_for_90_minutes() -> None:
    text = (
        "4.7.650 The mail server [203.0.113.20] has been temporarily rate limited"
        " due to IP reputation."
    )
    (evidence,) = match_reply(reply(451, "4.7.650", text), "microsoft", RULES)
    assert isinstance(evidence, ProviderPause)
    assert (evidence.action, evidence.duration) == (FeedbackAction.SLOW, timedelta(minutes=90))


@pytest.mark.parametrize(
    "text",
    [
        "Service unavailable; client host [203.0.113.20] blocked using zen.spamhaus.org",
        "Your IP is listed at bl.spamcop.net",
        "rejected by RBL",
        "IP on blacklist",
    ],
)
def test_replies_naming_a_blocklist_trigger_a_recheck(text: str) -> None:
    evidence = match_reply(reply(550, "5.7.1", text), "generic", RULES)
    assert [type(e) for e in evidence] == [BlocklistMention]


def test_user_unknown_is_not_evidence() -> None:
    text = "5.1.1 Recipient address rejected: not listed in public directory"
    assert match_reply(reply(550, "5.1.1", text), "microsoft", RULES) == ()


def test_own_deferral_is_never_evidence_even_if_it_names_a_blocklist() -> None:
    own = replace(YAHOO_BL, code=451, own=True, text="pool exhausted; IP listed at spamhaus")
    assert match_reply(own, "yahoo", RULES) == ()


def test_feedback_file_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    path.write_text('[patterns.x]\ntext = "x"\naction = "pause"\n')
    with pytest.raises(RuleError) as caught:
        load_feedback_files([path])
    assert (caught.value.file, caught.value.key) == (str(path), "patterns.x.duration")
    path.write_text('[patterns.x]\ntext = "x"\naction = "pause"\nduration = "1h"\nthreshold = 3\n')
    with pytest.raises(RuleError, match="window"):
        load_feedback_files([path])
    path.write_text('[patterns.x]\nprovider = "gmail"\ntext = "("\naction = "recheck"\n')
    with pytest.raises(RuleError, match="bad regular expression"):
        load_feedback_files([path])


def test_a_later_file_can_switch_a_shipped_pattern_off(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    path.write_text("[patterns.blocklist-mention]\nenabled = false\n")
    names = {r.name for r in load_feedback_files([SHIPPED, path])}
    assert "blocklist-mention" not in names
    assert "yahoo-bl" in names


# --- the pause tracker ------------------------------------------------------------------


def pause(
    at: datetime, *, threshold: int = 1, duration: timedelta = timedelta(hours=2)
) -> ProviderPause:
    window = timedelta(hours=1) if threshold > 1 else None
    return ProviderPause(
        IP, "yahoo", duration, "r", at, "rule", FeedbackAction.PAUSE, threshold, window
    )


def test_pause_after_five_matches_within_an_hour_counted_from_the_fifth_reply() -> None:
    tracker = PauseTracker()
    times = [T0 + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    assert all(tracker.observe(pause(t, threshold=5), t) is None for t in times)
    fifth = T0 + timedelta(minutes=40)
    suspension = tracker.observe(pause(fifth, threshold=5), fifth)
    assert suspension is not None
    assert (suspension.since, suspension.until) == (fifth, fifth + timedelta(hours=2))


def test_five_matches_spread_over_more_than_an_hour_do_not_pause() -> None:
    tracker = PauseTracker()
    for minute in (0, 20, 40, 61, 75):
        at = T0 + timedelta(minutes=minute)
        assert tracker.observe(pause(at, threshold=5), at) is None


def test_new_evidence_extends_and_expiry_counts_from_the_reply_not_from_now() -> None:
    tracker = PauseTracker()
    tracker.observe(pause(T0), T0)
    later = T0 + timedelta(minutes=30)
    extended = tracker.observe(pause(later), later + timedelta(minutes=5))
    assert extended is not None
    assert (extended.since, extended.until) == (T0, later + timedelta(hours=2))


def test_evidence_older_than_the_suspension_is_ignored() -> None:
    tracker = PauseTracker()
    tracker.observe(pause(T0), T0)
    stale = pause(T0 - timedelta(minutes=1), duration=timedelta(hours=5))
    assert tracker.observe(stale, T0 + timedelta(minutes=1)) is None
    current = tracker.active(IP, "yahoo", T0)
    assert current is not None
    assert current.until == T0 + timedelta(hours=2)  # unchanged


def test_evidence_whose_effect_is_already_over_is_ignored() -> None:
    tracker = PauseTracker()
    assert tracker.observe(pause(T0), T0 + timedelta(hours=2)) is None
    assert tracker.suspensions(T0) == ()


def test_suspension_ends_at_until() -> None:
    tracker = PauseTracker()
    tracker.observe(pause(T0), T0)
    assert tracker.active(IP, "yahoo", T0 + timedelta(hours=2) - timedelta(seconds=1))
    assert tracker.active(IP, "yahoo", T0 + timedelta(hours=2)) is None
    assert tracker.active(IP, "google", T0) is None


_minutes = st.integers(-180, 300)


@given(
    st.lists(st.tuples(_minutes, st.integers(1, 180), st.integers(1, 3)), max_size=25),
    st.integers(0, 300),
)
def test_property_expiry_never_moves_backwards_and_stale_evidence_changes_nothing(
    events: list[tuple[int, int, int]], now_minute: int
) -> None:
    tracker = PauseTracker()
    now = T0 + timedelta(minutes=now_minute)
    previous_until = None
    for minute, duration, threshold in events:
        at = T0 + timedelta(minutes=minute)
        evidence = pause(at, threshold=threshold, duration=timedelta(minutes=duration))
        before = tracker.active(IP, "yahoo", now)
        result = tracker.observe(evidence, now)
        after = tracker.active(IP, "yahoo", now)
        if before is not None and at <= before.since:
            assert result is None
            assert after == before
        if result is not None:
            assert result.until == at + evidence.duration
            assert result.until > now
        if after is not None:
            if previous_until is not None:
                assert after.until >= previous_until
            previous_until = after.until


_codes = st.integers(200, 599)
_texts = st.sampled_from(
    [YAHOO_BL.text, "[TSS04] deferred", "blocked using zen.spamhaus.org", "ok"]
)


@given(_codes, _texts, st.sampled_from(["yahoo", "google", "microsoft", "aol", "generic"]))
def test_property_own_deferrals_never_produce_evidence(code: int, text: str, provider: str) -> None:
    own = reply(code, "4.3.0", text, own=True)
    assert match_reply(own, provider, RULES) == ()
    assert all(e.ip == IP for e in match_reply(replace(own, own=False), provider, RULES))


def test_feedback_rules_check_form_lists_the_problem_or_nothing(tmp_path: Path) -> None:

    bad = tmp_path / "feedback.toml"
    bad.write_text('[patterns.x]\ntext = "x"\naction = "stop"\n')
    assert feedback_file_problems([SHIPPED]) == []
    assert feedback_file_problems([bad]) == [
        f"{bad}: patterns.x.action: one of pause, slow, recheck"
    ]
