"""``hrmonitor check`` as a Nagios plugin, and as a probe that never alerts (issues 14.6, 12.5).

Real peers: rbldnsd or a resolver that never answers, a webhook receiver on
loopback, the store on SQLite; check runs as its own process, output piped.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from hrmonitor.adapters.store import open_store
from tests.fixtures.app_config import make_config
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.webhook import WebhookReceiver

# Nagios plugin guidelines: "SERVICE STATUS - text|label=value;warn;crit ...".
pytestmark = pytest.mark.slow  # each test starts check as a process, some wait for timeouts

STATUS_LINE = re.compile(
    r"^DNSBL (OK|WARNING|CRITICAL|UNKNOWN) - (?P<text>[^|\n]+)\|(?P<perf>(?:\S+=\S+ ?)+)$"
)


async def check(config: Path, *args: str) -> tuple[int, str, str]:
    """``hrmonitor check`` as a process with its output in a pipe at 80 columns.

    Asynchronous, so that a webhook receiver in this event loop would still take
    (and record) any POST the check made.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hrmonitor", "check", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def perfdata(line: str) -> dict[str, str]:
    match = STATUS_LINE.match(line)
    assert match, line
    return dict(item.split("=", 1) for item in match["perf"].split())


async def test_the_first_line_is_a_nagios_status_line_with_performance_data(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    code, out, _ = await check(config, "--pool", "high-risk")
    assert code == 2
    first, *details = out.splitlines()
    assert first.startswith("DNSBL CRITICAL - 3 listed of 3 (bl: 127.0.0.20 SBL; ")
    perf = perfdata(first)
    assert perf["listed"] == "3;;1"
    assert (perf["checked"], perf["answers"], perf["unknown"], perf["zones_unhealthy"]) == (
        "3", "3", "0", "0",
    )  # fmt: skip
    # The details follow, each whole on its own line: longer than the 80 columns of
    # the pipe's COLUMNS, neither wrapped nor cut.
    line = (
        "127.0.0.20 (high-risk) listed on bl (bl.test) SBL critical: "
        "Listed, see https://bl.test/?ip=127.0.0.20"
    )
    assert len(line) > 80
    assert line in details


async def test_a_clean_pool_is_ok_and_an_unreachable_resolver_is_unknown(
    rbldnsd: Rbldnsd, blackhole_nameserver: tuple[str, int], tmp_path: Path
) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    code, out, _ = await check(make_config(clean, rbldnsd=rbldnsd), "--pool", "normal")
    assert code == 0
    assert out.splitlines()[0].startswith("DNSBL OK - 0 listed of 2|listed=0;;1 checked=2 ")

    dark = tmp_path / "dark"
    dark.mkdir()
    code, out, _ = await check(make_config(dark, nameserver=blackhole_nameserver), "127.0.0.20")
    assert code == 3
    first, *details = out.splitlines()
    assert first.startswith("DNSBL UNKNOWN - 0 listed of 1, zones not usable: bl unreachable")
    assert perfdata(first)["zones_unhealthy"] == "1"
    assert "zone bl (bl.test): unreachable" in details


def _webhook_alerts(receiver: WebhookReceiver) -> str:
    return f"""
[[alerts]]
type = "webhook"
url = "{receiver.url}"
timeout = "2s"
"""


async def test_check_with_an_unreachable_resolver_sends_no_alert_and_leaves_zone_health(
    rbldnsd: Rbldnsd,
    blackhole_nameserver: tuple[str, int],
    webhook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """A Nagios box polling with its own resolver must not page through the daemon's
    channels, nor tell the daemon's store that the lists are down."""
    database = f"sqlite:///{tmp_path / 'daemon.db'}"
    daemon_side = tmp_path / "daemon"
    daemon_side.mkdir()
    config = make_config(
        daemon_side, rbldnsd=rbldnsd, database=database, extra=_webhook_alerts(webhook)
    )
    # Zone health as the daemon's sweeps (here: a check told to record it) left it: ok.
    assert (await check(config, "--record", "all", "--pool", "normal"))[0] == 0

    probe_side = tmp_path / "probe"
    probe_side.mkdir()
    probe = make_config(
        probe_side,
        nameserver=blackhole_nameserver,
        database=database,
        extra=_webhook_alerts(webhook),
    )
    code, out, _ = await check(probe, "--pool", "high-risk")
    assert code == 3
    assert "bl unreachable" in out.splitlines()[0]
    await asyncio.sleep(0)  # let the receiver take anything already sent
    assert webhook.bodies == []
    store = open_store(database)
    try:
        assert store.zone_health()["bl"].health == "ok"
    finally:
        store.close()


async def test_check_records_listings_but_alerts_nobody_and_record_none_writes_nothing(
    rbldnsd: Rbldnsd, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'daemon.db'}"
    config = make_config(
        tmp_path, rbldnsd=rbldnsd, database=database, extra=_webhook_alerts(webhook)
    )

    assert (await check(config, "--record", "none", "127.0.0.20"))[0] == 2
    store = open_store(database)
    try:
        assert store.current_listings("127.0.0.20") == []
        assert store.zone_health() == {}
    finally:
        store.close()

    assert (await check(config, "127.0.0.20"))[0] == 2  # default: --record listings
    store = open_store(database)
    try:
        assert [x.zone for x in store.current_listings("127.0.0.20")] == ["bl"]
        assert store.zone_health() == {}  # zone health stays the daemon's
    finally:
        store.close()
    assert webhook.bodies == []  # a critical listing, and still no webhook: the exit is the alert
