"""Alert values: dedupe keys name the condition, and the JSON rendering is plain data."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hrmonitor.core.alert import (
    Alert,
    AlertKind,
    Claim,
    Claimed,
    alert_key,
    as_resolution_of,
    merge_decided,
)
from hrmonitor.core.model import Severity

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_alert_key_names_the_condition_without_empty_parts() -> None:
    """The same condition always gets the same key; pool-level keys have no IP part."""
    assert alert_key(AlertKind.LISTING, "high-risk", "10.0.0.1", "zen") == (
        "listing:high-risk:10.0.0.1:zen"
    )
    assert alert_key(AlertKind.POOL_EXHAUSTED, "high-risk") == "pool-exhausted:high-risk"


def test_as_dict_is_json_serialisable_with_iso_times() -> None:
    """Datetimes, enums, tuples and durations in details become JSON values."""
    alert = Alert(
        AlertKind.RETIREMENT,
        Severity.HIGH,
        "k",
        "s",
        T0,
        {
            "codes": ("127.0.0.2",),
            "until": T0,
            "cooldown": timedelta(hours=1),
            "severity": Severity.CRITICAL,
        },
        "high-risk",
        "10.0.0.1",
    )
    data = json.loads(json.dumps(alert.as_dict()))
    assert data["kind"] == "retirement"
    assert data["details"] == {
        "codes": ["127.0.0.2"],
        "until": T0.isoformat(),
        "cooldown": "1:00:00",
        "severity": "critical",
    }
    assert data["resolved"] is False


def test_every_spec_alert_kind_exists() -> None:
    """The README's alert list ("Tell"), one kind each."""
    spec = {
        "listing",
        "delisting",
        "zone-health",
        "retirement",
        "promotion",
        "restoration",
        "suspension",
        "pool-below-min",
        "pool-exhausted",
        "normal-ip-listed",
        "sending-limit",
        "dsn-surge",
    }
    assert spec <= {str(kind) for kind in AlertKind}


def test_the_json_body_says_firing_or_resolved_and_the_event() -> None:
    """Issue 14 item 5: ``state`` beside the (kept) ``resolved`` bool; ``event``, or the kind."""
    firing = Alert(AlertKind.LISTING, Severity.HIGH, "k", "s", T0, node="mx1")
    body = firing.as_dict()
    assert (body["state"], body["resolved"], body["event"], body["node"]) == (
        "firing", False, "listing", "mx1",
    )  # fmt: skip
    done = Alert(AlertKind.LISTING, Severity.HIGH, "k", "s", T0, resolved=True, event="delisting")
    assert (done.as_dict()["state"], done.as_dict()["event"]) == ("resolved", "delisting")


def test_a_resolution_takes_the_kind_and_severity_the_store_says_it_was_raised_with() -> None:
    delisting = Alert(AlertKind.DELISTING, Severity.LOW, "k", "s", T0, resolved=True)
    claim = Claim(Claimed.RESOLVED, "normal-ip-listed", Severity.CRITICAL)
    sent = as_resolution_of(delisting, claim)
    assert (sent.kind, sent.severity, sent.event) == (
        AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, "delisting",
    )  # fmt: skip
    raised = Alert(AlertKind.LISTING, Severity.LOW, "k", "s", T0)
    assert as_resolution_of(raised, Claim(Claimed.NEW)) is raised


def _listing(kind: AlertKind, severity: Severity, **details: object) -> Alert:
    key = alert_key(AlertKind.LISTING, "high-risk", "10.0.0.1", "zen")
    return Alert(kind, severity, key, f"{kind}", T0, details, "high-risk", "10.0.0.1")


def test_merge_makes_the_monitor_listing_and_rotation_decision_one_alert() -> None:
    """The monitor's alert (lookup link) and rotation's (the action) are one event."""
    told = _listing(AlertKind.LISTING, Severity.MEDIUM, lookup_url="https://zen/?ip")
    decided = replace(
        _listing(AlertKind.LISTING, Severity.HIGH, action="retired", promoted=["10.0.0.3"]),
        handled=True,
    )
    other = Alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, "pool-below-min:high-risk", "s", T0)
    (merged, below) = merge_decided([told], [decided, other])
    assert below is other
    assert (merged.kind, merged.severity, merged.key, merged.handled) == (
        AlertKind.LISTING, Severity.HIGH, told.key, True,
    )  # fmt: skip
    assert merged.details == {
        "lookup_url": "https://zen/?ip", "action": "retired", "promoted": ["10.0.0.3"],
    }  # fmt: skip


def test_merge_tells_a_retirement_of_an_ip_whose_listing_was_told_before_as_retirement() -> None:
    """Its listing alert is open already: the retirement is the new event, under its own key."""
    decided = _listing(AlertKind.LISTING, Severity.HIGH, action="retired")
    (alert,) = merge_decided([], [decided])
    assert alert.kind is AlertKind.RETIREMENT
    assert alert.key == "retirement:high-risk:10.0.0.1"
    repeat = _listing(AlertKind.LISTING, Severity.HIGH)
    assert merge_decided([], [repeat]) == [repeat]  # dedupe holds it until repeat_after
