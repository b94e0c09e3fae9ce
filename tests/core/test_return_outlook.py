"""What ``report``/``history`` say a retired IP waits on is what ``decide`` then does (item 5)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from hrmonitor.core.model import IPState, Severity
from hrmonitor.core.rotation.decide import IpView, OpenListing, Tick, decide
from hrmonitor.core.rotation.timers import ReturnClock, return_outlook
from tests.core.test_rotation_world import T0, high_pool

COOLDOWN = timedelta(hours=3)
minutes = st.integers(-600, 600).map(lambda m: T0 + timedelta(minutes=m))


@settings(max_examples=400, deadline=None)
@given(
    retired_at=minutes,
    clean=st.one_of(st.none(), st.tuples(minutes, minutes)),
    listed=st.booleans(),
    actor=st.sampled_from(["rotation.retire", "operator:alice"]),
    until=st.one_of(st.none(), minutes),
    now=minutes,
)
def test_the_outlook_tells_the_restore_rule(
    retired_at: datetime,
    clean: tuple[datetime, datetime] | None,
    listed: bool,
    actor: str,
    until: datetime | None,
    now: datetime,
) -> None:
    clean_since: datetime | None
    checked: datetime | None
    clean_since, checked = (None, None) if clean is None else (min(clean), max(clean))
    if checked is not None and checked > now:
        assert clean_since is not None  # set together with checked
        checked = now  # sweeps are in the past
        clean_since = min(clean_since, checked)
    listings = (
        (OpenListing("zen", ("127.0.0.2",), Severity.CRITICAL, retired_at),) if listed else ()
    )
    view = IpView(
        "10.0.0.1", "high-risk", IPState.RETIRED, retired_at, until, actor, listings,
        None if listed else clean_since, None if listed else checked,
    )  # fmt: skip
    pool = high_pool(ips=("10.0.0.1",), standby=(), cooldown=COOLDOWN)
    outlook = return_outlook(view, pool.policy)
    decision = decide(pool, [view], [Tick(now)], now)
    restored = any(
        t.ip == "10.0.0.1" and t.rule == "rotation.restore" for t in decision.transitions
    )
    event(f"{outlook.waits_on} restored={restored}")
    if restored:
        assert outlook.earliest is not None
        assert outlook.earliest <= now
    if outlook.waits_on in (ReturnClock.DELISTING, ReturnClock.NO_EVIDENCE):
        assert not restored
    if outlook.waits_on is ReturnClock.OPERATOR_RESTORE:
        assert not restored
        assert outlook.earliest is None
    if outlook.waits_on is ReturnClock.OPERATOR_UNTIL:
        assert outlook.earliest is not None
        assert restored == (now >= outlook.earliest)
    if outlook.waits_on is ReturnClock.COOLDOWN:
        assert outlook.earliest is not None
        assert view.clean_checked_at is not None
        if view.clean_checked_at >= outlook.earliest:
            assert restored
