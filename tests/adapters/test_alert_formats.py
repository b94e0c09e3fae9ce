"""Webhook bodies and log levels of alerts: pure renderings, checked against documented shapes.

The daemon test (tests/app/test_alerts_daemon.py) posts them to a real Alertmanager
and a Slack-shaped receiver; here the edges: escaping, limits, one-shot events.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from hrmonitor.adapters.alerts import (
    WebhookChannel,
    alertmanager_alert,
    log_level,
    render,
    slack_message,
)
from hrmonitor.core.alert import Alert, AlertKind, merge_decided
from hrmonitor.core.model import Severity

T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def listing(**more: object) -> Alert:
    return Alert(
        AlertKind.LISTING, Severity.HIGH, "listing:high-risk:10.0.0.1:zen",
        "10.0.0.1 (high-risk) is listed on zen", T0,
        {"zone": "zen", "lookup_url": "https://check.example/?ip=10.0.0.1"},
        "high-risk", "10.0.0.1", node="mx1", **more,  # type: ignore[arg-type]
    )  # fmt: skip


def test_alertmanager_labels_stay_the_same_from_firing_to_resolution() -> None:
    """Alertmanager pairs a resolution with its alert by labels; endsAt ends it."""
    firing = alertmanager_alert(listing())
    resolved = alertmanager_alert(listing(resolved=True, event="delisting"))
    assert firing["labels"] == resolved["labels"] == {
        "alertname": "listing", "severity": "high", "pool": "high-risk", "ip": "10.0.0.1",
        "zone": "zen", "key": "listing:high-risk:10.0.0.1:zen", "service": "hrmonitor",
    }  # fmt: skip
    assert firing["startsAt"] == "2026-12-07T05:00:00Z"
    assert isinstance(firing["endsAt"], str)
    assert firing["endsAt"] > "2027"  # open until resolved, not Alertmanager's 5 minutes
    assert resolved["endsAt"] == "2026-12-07T05:00:00Z"
    assert firing["generatorURL"] == "https://check.example/?ip=10.0.0.1"
    assert isinstance(firing["annotations"], dict)
    assert firing["annotations"]["node"] == "mx1"
    assert render(listing(), "alertmanager") == [firing]  # API v2 takes a list


def test_a_one_shot_event_is_left_to_alertmanagers_resolve_timeout() -> None:
    promotion = Alert(AlertKind.PROMOTION, Severity.LOW, "promotion:p:ip:t", "s", T0)
    body = alertmanager_alert(promotion)
    assert "endsAt" not in body
    assert "generatorURL" not in body


def test_slack_text_is_escaped_and_within_the_block_limits() -> None:
    """``<!channel>`` in a TXT record must not ping a channel; long text is cut."""
    alert = listing()
    noisy = Alert(alert.kind, alert.severity, alert.key, "<!channel> & " + "x" * 5000, T0,
                  {"zone": "zen"}, "high-risk", "10.0.0.1")  # fmt: skip
    message = slack_message(noisy)
    blocks = message["blocks"]
    assert isinstance(blocks, list)
    head = blocks[0]["text"]["text"]
    assert "<!channel>" not in head
    assert "&lt;!channel&gt; &amp;" in head
    assert len(head) <= 3000
    assert all(len(f["text"]) <= 2000 for f in blocks[1]["fields"])
    assert len(blocks[1]["fields"]) <= 10
    assert str(message["text"]).startswith("[hrmonitor HIGH] listing:")


def test_log_levels_page_for_what_stops_mail_and_warn_for_a_handled_retirement() -> None:
    assert log_level(listing()) == logging.ERROR
    assert log_level(listing(handled=True)) == logging.WARNING
    normal = Alert(AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, "k", "s", T0)
    assert log_level(normal) == logging.CRITICAL
    assert log_level(Alert(normal.kind, normal.severity, "k", "s", T0, handled=True)) == (
        logging.ERROR
    )
    exhausted = Alert(AlertKind.POOL_EXHAUSTED, Severity.CRITICAL, "k", "s", T0)
    assert log_level(exhausted) == logging.CRITICAL
    assert log_level(listing(resolved=True)) == logging.INFO


def test_an_alertmanager_address_alone_gets_the_api_path() -> None:
    bare = WebhookChannel("http://127.0.0.1:9093", 5.0, fmt="alertmanager")
    assert bare.name == "webhook http://127.0.0.1:9093/api/v2/alerts (alertmanager)"
    given = WebhookChannel("http://127.0.0.1:9093/api/v2/alerts", 5.0, fmt="alertmanager")
    assert given.name == bare.name
    plain = WebhookChannel("http://127.0.0.1:9000/", 5.0)
    assert plain.name == "webhook http://127.0.0.1:9000/"


def test_a_normal_pool_retirement_told_apart_from_its_listing_logs_at_error() -> None:
    """Its listing was told earlier, so it goes out as a retirement; still the normal pool."""
    decided = Alert(AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, "listing:normal:10.1.0.1:zen",
                    "s", T0, {"action": "retired"}, "normal", "10.1.0.1", handled=True)  # fmt: skip
    (retirement,) = merge_decided([], [decided])
    assert (retirement.kind, retirement.event) == (AlertKind.RETIREMENT, "normal-ip-listed")
    assert log_level(retirement) == logging.ERROR
