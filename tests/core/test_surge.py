"""The surge tracker's rules one by one: the three-test agreement, bounded memory, causes, rates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.core.alert import AlertKind
from hrmonitor.core.surge import (
    BounceReturned,
    Cause,
    DeliveryOutcome,
    Dimension,
    EvidenceSummary,
    MessageAccepted,
    RateStatus,
    RateThresholds,
    SurgeChange,
    SurgeSettings,
    SurgeTracker,
    attribute,
    rate_rows,
    surge_alert,
)
from hrmonitor.core.surge.anomaly import AnomalyMethod, AnomalyParams
from hrmonitor.core.surge.evidence import Evidence, summarise
from hrmonitor.core.surge.verp import BatvVerdict
from tests.core.test_surge_traffic import MINUTE, START, failed

SMALL = SurgeSettings(min_messages=20, min_dsns=5, max_keys=50, outbound_index=100)


def _dsn(at_minute: int, tenant: str = "contoso", rcpt: str = "x@dest.example") -> MessageAccepted:
    return MessageAccepted(
        START + at_minute * MINUTE,
        tenant,
        "",
        (rcpt,),
        sender_domain=f"{tenant}.example",
        kind="dsn",
    )


def _mail(at_minute: int, tenant: str = "contoso", mid: str = "") -> MessageAccepted:
    return MessageAccepted(
        START + at_minute * MINUTE,
        tenant,
        f"a@{tenant}.example",
        ("x@dest.example",),
        message_id=mid,
    )


def test_a_surge_needs_the_minimum_volume() -> None:
    """19 DSNs out of 19 recipients is 100 %, yet under min_messages=20 nothing opens."""
    tracker = SurgeTracker(SMALL)
    for _ in range(19):
        tracker.accepted(_dsn(0))
    assert tracker.evaluate(START + MINUTE) == ()
    tracker.accepted(_dsn(1))
    opened = tracker.evaluate(START + 2 * MINUTE)
    assert {(c.surge.dimension, c.surge.key) for c in opened} >= {(Dimension.TENANT, "contoso")}


def test_a_high_raw_ratio_on_few_dsns_is_not_enough() -> None:
    """4 DSNs in 25 recipients (16 %) stays under min_dsns=5 and raises nothing."""
    tracker = SurgeTracker(SMALL)
    for _ in range(21):
        tracker.accepted(_mail(0))
    for _ in range(4):
        tracker.accepted(_dsn(0))
    assert tracker.evaluate(START + MINUTE) == ()


def test_ratio_is_judged_by_its_wilson_lower_bound() -> None:
    """30 DSNs in 200 (15 %) is over a 10 % threshold raw, but its lower bound is not: no surge."""
    tracker = SurgeTracker(SurgeSettings(min_messages=20, min_dsns=5))
    for _ in range(170):
        tracker.accepted(_mail(0))
    for _ in range(30):
        tracker.accepted(_dsn(0))
    assert tracker.evaluate(START + MINUTE) == ()


def test_a_lasting_high_ratio_is_one_surge_until_the_detector_learns_it() -> None:
    """A day at 30 %: one surge opens, closes once the level is learnt, and never reopens.

    A new key starts from the prior (2 %), so 30 % is a surge at first; the
    baseline learns slowly while out of control, so it takes hours, not
    minutes, before the level counts as normal.
    """
    params = AnomalyParams(method=AnomalyMethod.CUSUM)
    tracker = SurgeTracker(SurgeSettings(min_messages=20, min_dsns=5, anomaly=params))
    changes: list[SurgeChange] = []
    for minute in range(24 * 60):
        for i in range(10):
            tracker.accepted(_dsn(minute) if i < 3 else _mail(minute))
        changes.extend(tracker.evaluate(START + (minute + 1) * MINUTE))
    tenant = [c for c in changes if c.surge.dimension is Dimension.TENANT]
    assert [c.resolved for c in tenant] == [False, True]
    assert tenant[1].at - tenant[0].at > timedelta(hours=2)
    assert tracker.open_surges() == ()
    detector = tracker._tracks[(Dimension.TENANT, "contoso")].detector
    assert not detector.out_of_control
    assert 0.25 < detector.mean < 0.35


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40),  # minute
            st.sampled_from(["mail", "dsn", "hard", "returned"]),
            st.sampled_from(["contoso", "fabrikam"]),
        ),
        max_size=300,
    )
)
def test_every_opened_surge_met_volume_and_bound(events: list[tuple[int, str, str]]) -> None:
    """Any traffic: openings meet volume, DSNs and bound; per key open/resolve alternate."""
    tracker = SurgeTracker(SMALL)
    changes: list[SurgeChange] = []
    last = 0
    for minute, kind, tenant in sorted(events):
        if minute > last:
            changes.extend(tracker.evaluate(START + minute * MINUTE))
            last = minute
        at = START + minute * MINUTE
        if kind == "mail":
            tracker.accepted(_mail(minute, tenant))
        elif kind == "dsn":
            tracker.accepted(_dsn(minute, tenant))
        elif kind == "hard":
            tracker.delivered(
                DeliveryOutcome(
                    at,
                    tenant,
                    f"a@{tenant}.example",
                    "x@dest.example",
                    "203.0.113.20",
                    "userunknown",
                    hard=True,
                )
            )
        else:
            tracker.returned(
                BounceReturned(
                    at,
                    f"a@{tenant}.example",
                    (failed("x@dest.example", "userunknown"),),
                    tenant=tenant,
                )
            )
    changes.extend(tracker.evaluate(START + 41 * MINUTE))
    for change in changes:
        if not change.resolved:
            surge = change.surge
            assert surge.messages >= SMALL.min_messages
            assert SMALL.min_dsns <= surge.dsns <= surge.messages
            assert surge.lower_bound >= SMALL.ratio
    assert tracker.tracked_keys <= SMALL.max_keys
    # Per key, changes alternate open, resolve, open...: never two openings in a row.
    state: dict[tuple[Dimension, str], bool] = {}
    for change in changes:
        key = (change.surge.dimension, change.surge.key)
        assert state.get(key, False) is change.resolved
        state[key] = not change.resolved
    assert {s.key for s in tracker.open_surges()} == {
        k for (_, k), is_open in state.items() if is_open
    }


def test_tracked_keys_are_capped_and_the_least_recent_goes_first() -> None:
    """Beyond max_keys the oldest key is evicted; a recently used one stays."""
    tracker = SurgeTracker(SurgeSettings(max_keys=10))
    tracker.accepted(_mail(0, "keep"))
    for i in range(30):
        tracker.accepted(_mail(0, f"t{i}"))
        tracker.accepted(_mail(0, "keep"))
    assert tracker.tracked_keys == 10
    tracker.accepted(_dsn(0, "keep"))
    assert any(k == "keep" for _, k in tracker._tracks)


def test_a_key_with_an_open_surge_is_never_evicted() -> None:
    """Eviction skips open surges, so their resolution still gets sent."""
    tracker = SurgeTracker(SurgeSettings(min_messages=20, min_dsns=5, max_keys=5))
    for _ in range(40):
        tracker.accepted(_dsn(0, "victim", "x@victim-dest.example"))
    opened = tracker.evaluate(START + MINUTE)
    assert any(c.surge.key == "victim" for c in opened)
    for i in range(20):
        tracker.accepted(_mail(1, f"other{i}"))
    assert any(s.key == "victim" for s in tracker.open_surges())
    assert tracker.tracked_keys <= 5 + len(tracker.open_surges())


def test_outbound_index_is_bounded_and_matches_recent_mail() -> None:
    """The index keeps the newest ids; a bounce about recent mail is ours, about evicted not."""
    tracker = SurgeTracker(SMALL)
    for i in range(150):
        tracker.accepted(_mail(0, mid=f"<{i}@contoso.example>"))
    assert tracker.indexed_ids == 100
    for mid in ("<149@contoso.example>", "<0@contoso.example>"):
        tracker.returned(
            BounceReturned(
                START,
                "a@contoso.example",
                (failed("x@dest.example", "userunknown"),),
                message_ids=(mid,),
            )
        )
    # Only the matched one counts as the tenant's own hard bounce.
    (row,) = tracker.rates(START)
    assert row.hard_bounces == 1


def test_batv_expired_bounce_is_ours_and_invalid_one_is_not() -> None:
    """An expired tag is our own late bounce; an invalid tag is foreign mail (denominator too)."""
    tracker = SurgeTracker(SMALL)
    tracker.returned(
        BounceReturned(
            START,
            "a@contoso.example",
            (failed("x@d.example", "userunknown"),),
            tenant="contoso",
            batv=BatvVerdict.EXPIRED,
        )
    )
    tracker.returned(
        BounceReturned(
            START,
            "b@contoso.example",
            (failed("y@d.example", "userunknown"),),
            tenant="contoso",
            batv=BatvVerdict.INVALID,
        )
    )
    (row,) = tracker.rates(START)
    assert row.hard_bounces == 1
    track = tracker._tracks[(Dimension.TENANT, "contoso")]
    assert track.window.sums == [1, 2]  # only the forged one added to the recipients
    assert track.evidence.batv_bad == 1
    assert track.evidence.unmatched == 1


def test_rates_count_delivery_outcomes_and_matched_complaints_per_tenant() -> None:
    """Hard bounces over final outcomes; ARF complaints matched by Message-ID; soft replies not."""
    tracker = SurgeTracker(SMALL)
    tracker.accepted(_mail(0, mid="<m1@contoso.example>"))
    at = START + MINUTE
    for i in range(100):
        reason, hard = ("userunknown", True) if i < 6 else ("delivered", False)
        tracker.delivered(
            DeliveryOutcome(
                at, "contoso", "a@contoso.example", f"r{i}@d.example", "203.0.113.20", reason, hard
            )
        )
    tracker.delivered(
        DeliveryOutcome(
            at, "contoso", "a@contoso.example", "z@d.example", "203.0.113.20", "ratelimited"
        )
    )
    tracker.returned(
        BounceReturned(at, "a@contoso.example", kind="arf", message_ids=("<m1@contoso.example>",))
    )
    (row,) = tracker.rates(at)
    assert (row.sent, row.hard_bounces, row.complaints) == (100, 6, 1)
    assert row.bounce_status is RateStatus.REVIEW
    assert row.complaint_status is RateStatus.PAUSE
    assert row.status is RateStatus.PAUSE
    # A day later the window has forgotten them.
    (later,) = tracker.rates(at + timedelta(days=1, hours=1))
    assert (later.sent, later.hard_bounces, later.complaints) == (0, 0, 0)


@pytest.mark.parametrize(
    ("sent", "hard", "complaints", "bounce", "complaint"),
    [
        (1000, 49, 0, RateStatus.OK, RateStatus.OK),
        (1000, 50, 0, RateStatus.REVIEW, RateStatus.OK),
        (1000, 100, 0, RateStatus.PAUSE, RateStatus.OK),
        (10000, 0, 9, RateStatus.OK, RateStatus.OK),
        (10000, 0, 10, RateStatus.OK, RateStatus.REVIEW),
        (10000, 0, 50, RateStatus.OK, RateStatus.PAUSE),
        (0, 0, 0, RateStatus.OK, RateStatus.OK),
    ],
)
def test_rate_rows_mark_the_published_thresholds(
    sent: int, hard: int, complaints: int, bounce: RateStatus, complaint: RateStatus
) -> None:
    """Hard bounces: 5 % review, 10 % pause; complaints: 0.1 % review, 0.5 % pause."""
    (row,) = rate_rows([("contoso", sent, hard, complaints)], RateThresholds())
    assert (row.bounce_status, row.complaint_status) == (bounce, complaint)
    assert row.as_dict()["status"] == max(
        bounce, complaint, key=[RateStatus.OK, RateStatus.REVIEW, RateStatus.PAUSE].index
    )


def _summary(**fields: object) -> EvidenceSummary:
    return EvidenceSummary(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("summary", "cause"),
    [
        (_summary(dsns=100, returned=90, unmatched=80), Cause.BACKSCATTER),
        (_summary(dsns=100, returned=90, unmatched=10), Cause.UNKNOWN),
        (
            _summary(dsns=100, returned=90, unmatched=0, batv_checked=90, batv_bad=85),
            Cause.BACKSCATTER,
        ),
        (
            _summary(
                dsns=100,
                userunknown=90,
                unknown_domain="c.example",
                unknown_locals=80,
                unknown_senders=2,
            ),
            Cause.DIRECTORY_HARVEST,
        ),
        (
            _summary(
                dsns=100,
                userunknown=90,
                unknown_domain="c.example",
                unknown_locals=80,
                unknown_senders=40,
            ),
            Cause.UNKNOWN,
        ),
        (
            _summary(
                dsns=100,
                userunknown=90,
                unknown_domain="c.example",
                unknown_locals=5,
                unknown_senders=1,
            ),
            Cause.UNKNOWN,
        ),
        (
            _summary(
                rcpts=200,
                dsns=50,
                top_sender="s@c",
                top_sender_rcpts=150,
                scored=200,
                spam_high=120,
            ),
            Cause.SPAM_ATTACK,
        ),
        (
            _summary(rcpts=200, dsns=50, top_sender="s@c", top_sender_rcpts=150, refusals=120),
            Cause.SPAM_ATTACK,
        ),
        (
            _summary(
                rcpts=200, dsns=50, top_sender="s@c", top_sender_rcpts=50, scored=200, spam_high=120
            ),
            Cause.UNKNOWN,
        ),
        (
            _summary(rcpts=200, dsns=50, new_client_rcpts=150, new_clients=("192.0.2.99",)),
            Cause.ROGUE_SERVER,
        ),
        (_summary(rcpts=200, dsns=50, loops=120), Cause.ROGUE_SERVER),
        (_summary(rcpts=200, dsns=50), Cause.UNKNOWN),
    ],
)
def test_attribution_names_a_cause_only_on_its_evidence(
    summary: EvidenceSummary, cause: Cause
) -> None:
    """Each cause needs its own evidence over the thresholds; otherwise the cause is unknown."""
    named, evidence = attribute(summary, SurgeSettings())
    assert named is cause
    assert evidence


def test_surge_alert_has_a_stable_key_and_a_resolution() -> None:
    """The alert and its resolution share a key per dimension+key; source IPs fill the ip field."""
    tracker = SurgeTracker(SurgeSettings(min_messages=20, min_dsns=5))
    for _ in range(30):
        tracker.delivered(
            DeliveryOutcome(
                START,
                "contoso",
                "a@contoso.example",
                "x@d.example",
                "203.0.113.20",
                "blocked",
                hard=True,
            )
        )
        tracker.delivered(
            DeliveryOutcome(
                START, "contoso", "a@contoso.example", "y@d.example", "203.0.113.20", "delivered"
            )
        )
    opened = {c.surge.dimension: c for c in tracker.evaluate(START + MINUTE)}
    alert = surge_alert(opened[Dimension.SOURCE_IP])
    assert alert.kind is AlertKind.DSN_SURGE
    assert alert.ip == "203.0.113.20"
    assert alert.key == "dsn-surge:203.0.113.20:source-ip"
    assert "30 of 60" in alert.summary
    assert alert.details["dimension"] == "source-ip"
    assert alert.details["dsns"] == 30
    changes: list[SurgeChange] = []
    for minute in range(1, 30):
        changes.extend(tracker.evaluate(START + minute * MINUTE))
    resolved = [c for c in changes if c.resolved and c.surge.dimension is Dimension.SOURCE_IP]
    assert len(resolved) == 1
    closing = surge_alert(resolved[0])
    assert closing.resolved
    assert closing.key == alert.key
    assert "subsided" in closing.summary
    tenant = surge_alert(opened[Dimension.TENANT])
    assert tenant.key == "dsn-surge:tenant=contoso"
    assert tenant.ip is None


@pytest.mark.parametrize(
    "bad",
    [
        {"bucket": timedelta(0)},
        {"window": timedelta(seconds=30)},
        {"ratio": 1.5},
        {"min_messages": 0},
        {"rates_bucket": timedelta(days=2)},
        {"dha_min_local_parts": 500},
        {"dha_max_senders": 16},
    ],
)
def test_nonsense_settings_are_refused(bad: dict[str, object]) -> None:
    """Settings that would make the windows or thresholds meaningless raise ValueError."""
    with pytest.raises(ValueError, match="surge"):
        SurgeSettings(**bad)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=400),
    st.integers(min_value=2, max_value=5),
)
def test_a_sender_with_most_of_the_volume_is_always_the_top_sender(
    others: list[int], weight: int
) -> None:
    """Capped sender tables still name the sender holding 2/3+ of recipients, among any crowd."""
    evidence = Evidence()
    for other in others:
        evidence.volume(1, f"s{other}@c.example", "", False, False, None, 5.0)
        evidence.volume(weight, "spammer@c.example", "", False, False, None, 5.0)
    summary = summarise(evidence, None)
    assert summary.top_sender == "spammer@c.example"
    assert summary.rcpts == len(others) * (1 + weight)


def test_evidence_older_than_two_windows_is_forgotten() -> None:
    """Unknown-user bounces from two hours ago do not make today's surge a directory harvest."""
    tracker = SurgeTracker(SMALL)
    for i in range(40):
        tracker.delivered(
            DeliveryOutcome(
                START,
                "contoso",
                "a@contoso.example",
                f"guess{i}@victim.example",
                "203.0.113.20",
                "userunknown",
                hard=True,
            )
        )
    later = START + timedelta(hours=2)
    tracker.delivered(
        DeliveryOutcome(
            later,
            "contoso",
            "a@contoso.example",
            "x@victim.example",
            "203.0.113.20",
            "blocked",
            hard=True,
        )
    )
    track = tracker._tracks[(Dimension.DESTINATION, "victim.example")]
    summary = summarise(track.evidence, track.previous)
    assert summary.userunknown == 0
    assert summary.refusals == 1
