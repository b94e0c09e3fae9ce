"""Issue 14 item 5 as an operator meets it: the alerts of a real ``hrmonitor run`` process.

Peers on loopback, started by fixtures: rbldnsd (lists 127.0.0.20 until the test
delists it), the recording MX, a JSON and a Slack-shaped webhook receiver, and a
real Prometheus Alertmanager (API v2). The daemon sweeps every second; the
high-risk pool's listed IP is retired and its standby promoted.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from hrmonitor.cli import main
from tests.fixtures.alertmanager import Alertmanager
from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import (
    config_for,
    metrics_url,
    scrape_until,
    start,
    state_of,
    until,
    value,
)
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.slow

LISTED, STANDBY = "127.0.0.20", "127.0.0.21"

POOLS = f"""
[pools.normal]
risk = "normal"
ips = ["127.0.0.10", "127.0.0.11"]

[pools.high-risk]
risk = "high"
ips = ["{LISTED}"]
standby = ["{STANDBY}"]
interval = "1s"
cooldown = "1h"
"""


def alerts_section(json_url: str, slack_url: str, alertmanager_url: str) -> str:
    return f"""
[node]
name = "mx-a"

[alerting]
repeat_after = "2s"

[[alerts]]
type = "webhook"
url = "{json_url}"
timeout = "2s"

[[alerts]]
type = "webhook"
format = "slack"
url = "{slack_url}"
timeout = "2s"

[[alerts]]
type = "webhook"
format = "alertmanager"
url = "{alertmanager_url}"
timeout = "2s"
"""


def about(bodies: list[dict[str, object]], ip: str) -> list[dict[str, object]]:
    return [b for b in bodies if b.get("ip") == ip]


def slack_shaped(body: object) -> bool:
    """Slack's incoming-webhook message as documented: ``text`` and Block Kit sections."""
    assert isinstance(body, dict)
    assert isinstance(body["text"], str)
    assert body["text"]
    blocks = body["blocks"]
    assert isinstance(blocks, list)
    assert 0 < len(blocks) <= 50
    for block in blocks:
        assert block["type"] == "section"
        assert "text" in block or "fields" in block
        if "text" in block:
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < len(block["text"]["text"]) <= 3000
        if "fields" in block:
            assert 0 < len(block["fields"]) <= 10
            for item in block["fields"]:
                assert item["type"] == "mrkdwn"
                assert 0 < len(item["text"]) <= 2000
    return True


def held_by(alertmanager: Alertmanager, ip: str) -> list[dict[str, object]]:
    return [a for a in alertmanager.alerts() if a["labels"].get("ip") == ip]  # type: ignore[attr-defined]


async def test_a_listing_that_retires_an_ip_is_one_alert_in_every_format_and_resolves_as_itself(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    dns_server: DnsTestServer,
    smtp_sink: SmtpSink,
    webhook: WebhookReceiver,
    alertmanager: Alertmanager,
    daemon_process: DaemonFactory,
) -> None:
    slack = WebhookReceiver()
    await slack.start()
    try:
        rbldnsd.delist_ip(STANDBY)
        extra = alerts_section(webhook.url, slack.url, alertmanager.alerts_url)
        config = config_for(
            tmp_path, rbldnsd, dns_server, smtp_sink, pools=POOLS, extra=extra,
            metrics="127.0.0.1:0",
        )  # fmt: skip
        daemon = await start(daemon_process, config)
        await until(lambda: state_of(tmp_path, LISTED) == "retired")
        await until(lambda: bool(about(webhook.bodies, LISTED)))

        # 1. One event, one alert: the listing, carrying the retirement and its replacement.
        first = about(webhook.bodies, LISTED)[0]
        assert first["kind"] == "listing"
        assert first["state"] == "firing"
        assert first["resolved"] is False
        assert first["key"] == f"listing:high-risk:{LISTED}:bl"
        details = first["details"]
        assert isinstance(details, dict)
        assert details["action"] == "retired"
        assert details["promoted"] == [STANDBY]
        assert details["codes"] == ["127.0.0.2"]
        assert details["dns_zone"] == "bl.test"  # the monitor's facts, merged in
        assert "lookup_url" in details
        assert first["handled"] is True
        severity = first["severity"]
        assert severity in ("high", "critical")

        # 5. With repeat_after = 2s the open listing is sent again: a repeat, not a new alert.
        url = metrics_url(daemon)
        text = await scrape_until(
            url,
            lambda t: (
                value(t, "hrmonitor_alert_resends_total", kind="listing", reason="repeat") >= 2
            ),
        )
        assert value(text, "hrmonitor_alert_resends_total", kind="listing", reason="repeat") >= 2
        assert value(text, "hrmonitor_alerts_total", kind="listing") == 1
        assert value(text, "hrmonitor_alerts_total", kind="retirement") == 0
        assert value(text, "hrmonitor_alerts_total", kind="promotion") == 0
        await until(lambda: len(about(webhook.bodies, LISTED)) >= 3)  # the repeats went out
        sent = about(webhook.bodies, LISTED)
        assert {(b["kind"], b["key"], b["state"]) for b in sent} == {
            ("listing", first["key"], "firing")
        }
        assert about(webhook.bodies, STANDBY) == []  # no promotion alert of its own

        # 4. Alertmanager accepted it: labels identify the condition, the node annotates it.
        await until(lambda: bool(held_by(alertmanager, LISTED)))
        (held,) = held_by(alertmanager, LISTED)
        labels, annotations = held["labels"], held["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["alertname"] == "listing"
        assert labels["severity"] == severity
        assert labels["pool"] == "high-risk"
        assert labels["zone"] == "bl"
        assert annotations["node"] == "mx-a"
        assert "retired" in annotations["summary"]
        ends = datetime.fromisoformat(str(held["endsAt"]).replace("Z", "+00:00"))
        assert ends > datetime.now(UTC) + timedelta(days=1)  # open until hrmonitor resolves it

        # 2. The delisting resolves it under its kind and severity, in every format.
        rbldnsd.delist_ip(LISTED)
        await until(lambda: any(b["resolved"] for b in about(webhook.bodies, LISTED)))
        (resolution,) = [b for b in about(webhook.bodies, LISTED) if b["resolved"]]
        assert resolution["kind"] == "listing"
        assert resolution["severity"] == severity
        assert resolution["state"] == "resolved"
        assert resolution["event"] == "delisting"
        assert resolution["key"] == first["key"]
        await until(lambda: held_by(alertmanager, LISTED) == [])  # endsAt set: it ended

        # 3. Every alert the daemon sent names its node.
        assert webhook.bodies
        assert {b["node"] for b in webhook.bodies} == {"mx-a"}

        # Slack got the same alerts in its documented shape.
        await until(lambda: len(slack.bodies) >= 2)
        assert all(slack_shaped(b) for b in slack.bodies)
        texts = [str(b["text"]) for b in slack.bodies]
        assert any(LISTED in t and "retired" in t for t in texts)
        assert any(t.startswith("[hrmonitor RESOLVED]") and LISTED in t for t in texts)

        # 6. A retirement handled (replacement promoted) is a WARNING in the log, not an
        # ERROR or CRITICAL; its resolution INFO.
        levels = {
            (line.split()[1], "resolved:" in line)
            for line in daemon.log.read_text().splitlines()
            if "hrmonitor.alert:" in line and "[listing]" in line and LISTED in line
        }
        assert levels == {("WARNING", False), ("INFO", True)}
        # No channel refused a body (Alertmanager answers 400 to one not of its shape).
        assert not re.search(r"alert \S+ to webhook .* failed", daemon.log.read_text())
        assert await daemon.stop_async() == 0
    finally:
        await slack.close()


async def test_alertmanager_refuses_a_body_that_is_not_its_shape(
    alertmanager: Alertmanager,
) -> None:
    """The receiver checks what it is sent: the test above would see a malformed body fail."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(alertmanager.alerts_url, json={"kind": "listing"})
    assert answer.status_code == 400


async def test_an_operator_action_from_the_command_line_names_the_node_and_resolves_as_itself(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    """``ip retire``/``ip restore`` alert through the store's dedupe like the daemon: the
    node is named, and the restore resolves the retirement under its kind and severity."""
    extra = f'[node]\nname = "mx-b"\n[[alerts]]\ntype = "webhook"\nurl = "{webhook.url}"\n'
    config = make_config(tmp_path, extra=extra)

    def ip(verb: str) -> None:
        args = ["--config", str(config), "ip", verb, "127.0.0.20", "--reason", "test", "--force"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output

    await asyncio.to_thread(ip, "retire")
    await asyncio.to_thread(ip, "restore")
    told = [(b["kind"], b["severity"], b["state"], b["event"], b["node"]) for b in webhook.bodies]
    assert told == [
        ("retirement", "medium", "firing", "retirement", "mx-b"),
        ("retirement", "medium", "resolved", "restoration", "mx-b"),
    ]
