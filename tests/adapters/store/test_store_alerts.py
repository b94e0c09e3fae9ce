"""Alert dedupe in the store: one send per condition per repeat interval, resolutions once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hrmonitor.adapters.store import Store, open_store
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
