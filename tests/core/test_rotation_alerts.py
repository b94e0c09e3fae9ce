"""Alert values: dedupe keys name the condition, and the JSON rendering is plain data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hrmonitor.core.alert import Alert, AlertKind, alert_key
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
