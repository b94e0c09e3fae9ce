"""Alert dedupe in the store: one send per condition per repeat interval, resolutions once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hrmonitor.adapters.store import Store, open_store
from hrmonitor.core.alert import Alert, AlertKind, Claim, Claimed
from hrmonitor.core.model import Severity

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = "listing:high-risk:203.0.113.20:spamhaus-zen"
REPEAT = timedelta(hours=4)


def claim(store: Store, now: datetime, payload: dict[str, object] | None = None) -> bool:
    return store.claim_alert(
        KEY, "listing", Severity.HIGH, payload or {"zone": "spamhaus-zen"}, now, REPEAT
    )


def test_an_alert_is_sent_once_then_again_only_after_the_repeat_interval(store: Store) -> None:
    assert claim(store, T0) is True
    assert claim(store, T0 + timedelta(hours=1)) is False
    assert claim(store, T0 + REPEAT - timedelta(seconds=1)) is False
    assert claim(store, T0 + REPEAT) is True
    assert claim(store, T0 + REPEAT + timedelta(hours=1)) is False
    (alert,) = store.recent_alerts()
    assert (alert.first_at, alert.last_sent_at, alert.resolved_at) == (T0, T0 + REPEAT, None)


def test_resolution_is_reported_once_and_reopening_sends_at_once(store: Store) -> None:
    assert store.resolve_alert(KEY, T0) is False  # never raised: nothing to resolve
    claim(store, T0)
    assert store.resolve_alert(KEY, T0 + timedelta(hours=1)) is True
    assert store.resolve_alert(KEY, T0 + timedelta(hours=2)) is False
    (resolved,) = store.recent_alerts()
    assert resolved.resolved_at == T0 + timedelta(hours=1)
    assert store.open_alerts() == []

    reopened = T0 + timedelta(hours=2)
    assert claim(store, reopened) is True  # within the repeat interval, but a new occurrence
    (alert,) = store.open_alerts()
    assert (alert.first_at, alert.last_sent_at, alert.resolved_at) == (reopened, reopened, None)


def test_the_latest_payload_and_severity_are_kept(store: Store) -> None:
    claim(store, T0, {"codes": ("127.0.0.2",), "since": T0})
    store.claim_alert(
        KEY, "listing", Severity.CRITICAL, {"codes": ["127.0.0.4"]}, T0 + REPEAT, REPEAT
    )
    (alert,) = store.recent_alerts()
    assert alert.severity is Severity.CRITICAL
    assert alert.payload == {"codes": ["127.0.0.4"]}


def test_a_refused_claim_changes_nothing(store: Store) -> None:
    claim(store, T0, {"n": 1})
    assert not store.claim_alert(KEY, "listing", Severity.LOW, {"n": 2}, T0, REPEAT)
    (alert,) = store.recent_alerts()
    assert (alert.severity, alert.payload) == (Severity.HIGH, {"n": 1})


def test_recent_alerts_are_newest_first_and_limited(store: Store) -> None:
    for n in range(5):
        store.claim_alert(f"k{n}", "listing", Severity.LOW, {}, T0 + timedelta(minutes=n), REPEAT)
    assert [a.key for a in store.recent_alerts(limit=3)] == ["k4", "k3", "k2"]


def test_two_stores_claiming_the_same_alert_send_it_once(store: Store, store_url: str) -> None:
    other = open_store(store_url)
    try:
        results = [
            claim(store, T0),
            claim(other, T0),
            claim(other, T0 + REPEAT),
            claim(store, T0 + REPEAT),
        ]
    finally:
        other.close()
    assert results == [True, False, True, False]


# --- a batch: one transaction, the answers of the single calls ----------------------------


def raised(key: str, at: datetime, severity: Severity = Severity.HIGH) -> Alert:
    return Alert(AlertKind.LISTING, severity, key, f"{key} listed", at, {"zone": "zen"})


def resolved(key: str, at: datetime) -> Alert:
    return Alert(AlertKind.DELISTING, Severity.HIGH, key, f"{key} delisted", at, resolved=True)


def test_a_batch_of_new_alerts_sends_each_once_and_records_it(store: Store) -> None:
    batch = [raised(f"k{n}", T0) for n in range(3)]
    assert store.claim_alerts(batch, REPEAT) == [True, True, True]
    records = {a.key: a for a in store.open_alerts()}
    assert set(records) == {"k0", "k1", "k2"}
    k0 = records["k0"]
    assert (k0.kind, k0.severity, k0.first_at, k0.last_sent_at) == (
        "listing",
        Severity.HIGH,
        T0,
        T0,
    )
    assert k0.payload == batch[0].as_dict()


def test_a_key_twice_in_one_batch_is_sent_once(store: Store) -> None:
    assert store.claim_alerts([raised(KEY, T0), raised(KEY, T0)], REPEAT) == [True, False]


def test_a_batch_is_deduplicated_against_earlier_batches_until_the_repeat_interval(
    store: Store,
) -> None:
    assert store.claim_alerts([raised(KEY, T0), raised("other", T0)], REPEAT) == [True, True]
    later = T0 + REPEAT - timedelta(seconds=1)
    assert store.claim_alerts([raised(KEY, later), raised("new", later)], REPEAT) == [False, True]
    due = T0 + REPEAT
    assert store.claim_alerts([raised(KEY, due), raised("other", due)], REPEAT) == [True, True]
    assert claim(store, due + timedelta(hours=1)) is False  # the single path sees the batch's
    (alert,) = [a for a in store.recent_alerts() if a.key == KEY]
    assert (alert.first_at, alert.last_sent_at) == (T0, due)


def test_resolutions_in_a_batch_are_sent_once_and_only_for_open_alerts(store: Store) -> None:
    claim(store, T0)
    at = T0 + timedelta(hours=1)
    batch = [resolved(KEY, at), resolved(KEY, at), resolved("never-raised", at)]
    assert store.claim_alerts(batch, REPEAT) == [True, False, False]
    assert store.open_alerts() == []
    assert store.claim_alerts([resolved(KEY, at + timedelta(hours=1))], REPEAT) == [False]


def test_a_batch_raises_resolves_and_reopens_a_key_in_order(store: Store) -> None:
    batch = [
        resolved(KEY, T0),  # nothing open yet: no resolution, and no row either
        raised(KEY, T0),
        raised(KEY, T0),
        resolved(KEY, T0),
        raised(KEY, T0),  # within the interval, but a new occurrence
    ]
    assert store.claim_alerts(batch, REPEAT) == [False, True, False, True, True]
    (alert,) = store.open_alerts()
    assert (alert.key, alert.last_sent_at, alert.resolved_at) == (KEY, T0, None)


def test_a_batch_answers_as_the_single_calls_one_after_another(store: Store) -> None:
    """The same history on two key spaces: single calls on one, one batch on the other."""
    history = [  # (suffix, at, resolved) before the batch: open, due, resolved again
        ("open", T0, False),
        ("due", T0 - REPEAT, False),
        ("closed", T0 - timedelta(hours=1), False),
        ("closed", T0 - timedelta(minutes=30), True),
    ]
    step = [
        ("open", False), ("due", False), ("closed", False), ("fresh", False),
        ("open", True), ("fresh", True), ("unknown", True), ("open", False),
        ("due", False), ("fresh", False),
    ]  # fmt: skip
    now = T0 + timedelta(minutes=10)
    answers: dict[str, list[bool]] = {}
    for space in ("single", "batch"):
        for suffix, at, is_resolved in history:
            key = f"{space}:{suffix}"
            store.claim_alerts([resolved(key, at) if is_resolved else raised(key, at)], REPEAT)
        alerts = [
            resolved(f"{space}:{s}", now) if is_resolved else raised(f"{space}:{s}", now)
            for s, is_resolved in step
        ]
        if space == "single":
            answers[space] = [
                store.resolve_alert(a.key, a.at)
                if a.resolved
                else store.claim_alert(a.key, str(a.kind), a.severity, a.as_dict(), a.at, REPEAT)
                for a in alerts
            ]
        else:
            answers[space] = store.claim_alerts(alerts, REPEAT)
    assert answers["batch"] == answers["single"]
    assert answers["batch"] == [False, True, True, True, True, True, False, True, False, True]

    def state(space: str) -> set[tuple[object, ...]]:
        return {
            (a.key.split(":")[1], a.first_at, a.last_sent_at, a.resolved_at)
            for a in store.recent_alerts(limit=100)
            if a.key.startswith(f"{space}:")
        }

    assert state("batch") == state("single")


def test_a_batch_larger_than_one_insert_statement(store: Store) -> None:
    # SQLAlchemy sends at most 1,000 rows per INSERT (insertmanyvalues_page_size).
    batch = [raised(f"k{n}", T0) for n in range(1_201)]
    assert store.claim_alerts(batch, REPEAT) == [True] * 1_201
    assert len(store.open_alerts()) == 1_201
    later = [raised(f"k{n}", T0 + timedelta(hours=1)) for n in range(1_200, 1_202)]
    assert store.claim_alerts(later, REPEAT) == [False, True]


def test_a_batch_and_another_store_claiming_together_send_each_alert_once(
    store: Store, store_url: str
) -> None:
    other = open_store(store_url)
    try:
        assert other.claim_alert(KEY, "listing", Severity.HIGH, {}, T0, REPEAT) is True
        assert store.claim_alerts([raised(KEY, T0), raised("k2", T0)], REPEAT) == [False, True]
        assert other.claim_alerts([raised("k2", T0), raised("k3", T0)], REPEAT) == [False, True]
    finally:
        other.close()


def test_an_empty_batch_is_a_no_op(store: Store) -> None:
    assert store.claim_alerts([], REPEAT) == []
    assert store.recent_alerts() == []


# --- what a claim says: new, repeat, re-fire, resolved (with the alert's kind) -------------


def test_a_claim_says_new_repeat_refire_or_resolved_and_a_resolution_what_it_resolves(
    store: Store,
) -> None:
    """The counter and the resolution's kind and severity rest on these answers."""
    critical = Alert(AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, KEY, "listed", T0)
    low_delisting = resolved(KEY, T0 + timedelta(hours=1))
    answers = store.claim_alerts_detailed(
        [critical, replace(critical, at=T0 + timedelta(minutes=1)), low_delisting], REPEAT
    )
    assert answers == [
        Claim(Claimed.NEW),
        Claim(Claimed.HELD),
        Claim(Claimed.RESOLVED, "normal-ip-listed", Severity.CRITICAL),
    ]
    # Open again an hour after its resolution: inside the repeat interval, flapping.
    again = replace(critical, at=T0 + timedelta(hours=2))
    assert store.claim_alerts_detailed([again], REPEAT) == [Claim(Claimed.REFIRE)]
    due = replace(critical, at=T0 + timedelta(hours=2) + REPEAT)
    assert store.claim_alerts_detailed([due], REPEAT) == [Claim(Claimed.REPEAT)]
    later = T0 + 3 * REPEAT
    assert store.claim_alerts_detailed([resolved(KEY, later)], REPEAT)[0].outcome is (
        Claimed.RESOLVED
    )
    # Well after its resolution it is a new condition again.
    reopened = replace(critical, at=later + REPEAT)
    assert store.claim_alerts_detailed([reopened], REPEAT) == [Claim(Claimed.NEW)]
    assert store.claim_alerts_detailed([resolved("never", later)], REPEAT) == [Claim(Claimed.HELD)]
