"""Suspensions from reply evidence: counted from the evidence, extended, never stale or own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.rotation.suspension import (
    WHOLE_IP,
    Pause,
    Suspension,
    apply_pause,
    current_for,
    suspended,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def pause(at: datetime, duration: timedelta = 2 * H, **kw: object) -> Pause:
    return Pause("10.0.0.1", "yahoo", duration, "TS04", at, "feedback.yahoo-ts04", **kw)  # type: ignore[arg-type]


def test_expiry_counts_from_the_evidence_time_not_processing_time() -> None:
    """A reply observed 10 minutes ago suspends until observed + duration."""
    s = apply_pause(None, pause(T0 - timedelta(minutes=10)), T0)
    assert s is not None
    assert s.until == T0 - timedelta(minutes=10) + 2 * H
    assert s.scope == "yahoo"
    assert s.since == T0 - timedelta(minutes=10)


def test_newer_evidence_extends_and_keeps_the_start() -> None:
    """Re-evidence moves until forward; since stays the first evidence's time."""
    first = apply_pause(None, pause(T0), T0)
    assert first is not None
    later = apply_pause(first, pause(T0 + H), T0 + H)
    assert later is not None
    assert later.until == T0 + 3 * H
    assert later.since == T0


def test_stale_evidence_is_ignored() -> None:
    """Evidence whose effect the current suspension already covers changes nothing."""
    current = apply_pause(None, pause(T0 + H), T0 + H)
    assert apply_pause(current, pause(T0), T0 + H) is None


def test_own_deferrals_are_never_evidence() -> None:
    """A pause made by our own engine (remote=False) never suspends or extends."""
    assert apply_pause(None, pause(T0, remote=False), T0) is None
    current = apply_pause(None, pause(T0), T0)
    assert apply_pause(current, pause(T0 + H, remote=False), T0 + H) is None


def test_already_expired_evidence_is_ignored() -> None:
    """A pause whose duration is over by now creates nothing."""
    assert apply_pause(None, pause(T0 - 3 * H), T0) is None


def test_future_evidence_cannot_stretch_beyond_its_duration() -> None:
    """A skewed clock's future timestamp counts from now."""
    s = apply_pause(None, pause(T0 + 5 * H), T0)
    assert s is not None
    assert s.until == T0 + 2 * H


def test_whole_ip_scope_covers_every_provider() -> None:
    """A pause without a provider suspends the IP for all destinations."""
    s = apply_pause(None, Pause("10.0.0.1", None, H, "bind failed", T0, "bind"), T0)
    assert s is not None
    assert s.scope == WHOLE_IP
    assert suspended([s], "10.0.0.1", "gmail", T0)
    assert not suspended([s], "10.0.0.2", "gmail", T0)
    assert not suspended([s], "10.0.0.1", "gmail", T0 + H)


def test_current_for_picks_the_live_suspension_of_the_pair() -> None:
    """Only active suspensions of the same (ip, scope) count as current."""
    old = Suspension("10.0.0.1", "yahoo", T0 - 3 * H, T0 - H, "x", "r")
    live = Suspension("10.0.0.1", "yahoo", T0, T0 + H, "x", "r")
    other = Suspension("10.0.0.1", "gmail", T0, T0 + 2 * H, "x", "r")
    assert current_for([old, live, other], "10.0.0.1", "yahoo", T0) == live


@given(
    st.lists(
        st.tuples(st.integers(0, 600), st.integers(1, 240), st.booleans()), min_size=1, max_size=20
    )
)
def test_until_never_shrinks_and_equals_latest_remote_effect(
    events: list[tuple[int, int, bool]],
) -> None:
    """Folding evidence in time order: until is monotone and only remote evidence moves it."""
    current: Suspension | None = None
    best: datetime | None = None
    for minute, duration, remote in sorted(events):
        now = T0 + timedelta(minutes=minute)
        p = pause(now, timedelta(minutes=duration), remote=remote)
        live = current if current is not None and current.active(now) else None
        new = apply_pause(live, p, now)
        if new is not None:
            assert remote
            assert live is None or new.until > live.until
            current = new
        if remote:
            effect = now + timedelta(minutes=duration)
            best = effect if best is None or (best <= now) or effect > best else best
        if current is not None and current.active(now):
            assert best is not None
            assert current.until == best
