"""``hrmonitor report`` and ``history`` as a postmaster reads them: the CLI's real entry
point against a real rbldnsd on loopback and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from hrmonitor.adapters import terminal
from hrmonitor.adapters.store import open_store
from hrmonitor.cli import main
from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.model import Severity, ZoneHealth
from tests.fixtures.app_config import POOLS, make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.rbldnsd import Rbldnsd


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture
def listed_config(rbldnsd: Rbldnsd, tmp_path: Path, store_url: str) -> Path:
    """A config whose store holds one sweep: 127.0.0.20 listed on bl (DNS zone bl.test)."""
    config = make_config(tmp_path, rbldnsd=rbldnsd, database=store_url)
    assert run("check", "--config", str(config), "--pool", "high-risk")[0] == 2
    return config


def test_each_listing_names_its_dns_zone_beside_the_catalogue_key(listed_config: Path) -> None:
    code, out = run("report", "--config", str(listed_config), "--json")
    assert code == 0
    report = json.loads(out)
    [high] = [p for p in report["pools"] if p["name"] == "high-risk"]
    [listed] = [ip for ip in high["ips"] if ip["ip"] == "127.0.0.20"]
    assert [(x["zone"], x["dns_zone"]) for x in listed["listings"]] == [("bl", "bl.test")]
    assert [(z["name"], z["dns_zone"]) for z in report["zones"]] == [("bl", "bl.test")]

    code, out = run("history", "--config", str(listed_config), "--json", "127.0.0.20")
    assert code == 0
    history = json.loads(out)
    assert [(x["zone"], x["dns_zone"]) for x in history["listings"]] == [("bl", "bl.test")]


def test_the_terminal_zone_table_fills_its_zone_column(listed_config: Path) -> None:
    code, out = run("report", "--config", str(listed_config))
    assert code == 0
    [row] = [line for line in out.splitlines() if " bl.test " in f" {line} "]
    assert "bl" in row.split()[:2]
    assert "unknown" in row  # check alone does not judge zone health; no daemon ran


def _watch_lines(config: Path, *extra: str, lines: int) -> list[str]:
    """Run ``report --watch`` as a process into a pipe; the first ``lines`` lines it writes."""
    command = [sys.executable, "-m", "hrmonitor", "report", "--config", str(config)]
    process = subprocess.Popen(
        [*command, "--watch", "--every", "0.2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # A watch that writes nothing into the pipe must fail the test, not hang it.
    deadline = threading.Timer(60, process.send_signal, [signal.SIGINT])
    deadline.start()
    try:
        assert process.stdout is not None
        got = [process.stdout.readline() for _ in range(lines)]
    finally:
        deadline.cancel()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert "Traceback" not in err
    return got


@pytest.mark.slow
def test_watch_json_into_a_pipe_writes_one_document_per_refresh_per_line(
    listed_config: Path,
) -> None:
    got = _watch_lines(listed_config, "--json", lines=3)
    documents = [json.loads(line) for line in got]  # each line a whole document
    assert all(line.endswith("\n") for line in got)
    assert [len(d["pools"]) for d in documents] == [2, 2, 2]
    assert len({d["generated_at"] for d in documents}) == 3  # three refreshes, not one


@pytest.mark.slow
def test_watch_without_json_into_a_pipe_prints_a_plain_report_per_refresh(
    listed_config: Path,
) -> None:
    got = _watch_lines(listed_config, lines=400)
    text = "".join(got)
    assert text.count("high-risk (high)") >= 2  # one pool panel per refresh
    assert "\x1b[" not in text  # plain text, no cursor movement or colour


# The shortest pool interval 10 minutes: stale after 30 minutes without a daemon's sweep.
SLOW_POOLS = POOLS.replace('interval = "1s"', 'interval = "10m"').replace(
    'when_exhausted = "use-listed"\n', 'when_exhausted = "use-listed"\ninterval = "15m"\n'
)


@pytest.mark.parametrize(("age", "stale"), [(timedelta(hours=1), True), (timedelta(0), False)])
def test_the_report_says_when_a_daemon_last_wrote_and_marks_old_data_stale(
    rbldnsd: Rbldnsd, tmp_path: Path, store_url: str, age: timedelta, stale: bool
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd, database=store_url, pools=SLOW_POOLS)
    assert run("check", "--config", str(config), "--pool", "high-risk")[0] == 2
    code, out = run("report", "--config", str(config), "--json")
    before = json.loads(out)
    assert (before["data_as_of"], before["stale"]) == (None, True)  # check is not a daemon

    written = datetime.now(UTC) - age
    store = open_store(store_url)
    try:  # what a daemon's sweep writes: every configured zone's health, stamped
        store.record_sweep([], {"bl": ZoneHealth.OK}, written)
    finally:
        store.close()

    code, out = run("report", "--config", str(config), "--json")
    assert code == 0
    report = json.loads(out)
    as_of = datetime.fromisoformat(report["data_as_of"])
    assert abs(as_of.replace(tzinfo=as_of.tzinfo or UTC) - written) < timedelta(seconds=1)
    assert report["stale"] is stale
    assert report["stale_after_seconds"] == 1800

    code, out = run("report", "--config", str(config))
    assert code == 0
    first = out.strip().splitlines()[0]
    assert first.startswith("STALE: ") is stale  # the first thing a postmaster reads
    assert ("data as of" in first) is not stale


@pytest.mark.slow
def test_the_daemon_resolves_the_alert_of_a_zone_removed_from_the_config(
    rbldnsd: Rbldnsd, tmp_path: Path, store_url: str, daemon_process: DaemonFactory
) -> None:
    """A previous run judged list ``gone`` dead and alerted; the config no longer has it."""
    config = make_config(tmp_path, rbldnsd=rbldnsd, database=store_url)
    assert run("check", "--config", str(config), "--pool", "high-risk")[0] == 2  # migrates
    earlier = datetime.now(UTC) - timedelta(hours=2)
    gone = alert_key(AlertKind.ZONE_HEALTH, None, None, "gone")
    store = open_store(store_url)
    try:
        store.record_sweep([], {"gone": ZoneHealth.DEAD}, earlier)
        dead = Alert(AlertKind.ZONE_HEALTH, Severity.HIGH, gone, "zone gone is dead", earlier)
        assert store.claim_alerts([dead], timedelta(hours=1)) == [True]
        assert [a.key for a in store.open_alerts()] == [gone]

        code, out = run("report", "--config", str(config), "--json")
        assert code == 0
        assert "gone" not in {z["name"] for z in json.loads(out)["zones"]}  # not shown dead

        daemon = daemon_process(config)
        deadline = time.monotonic() + 60
        while gone in {a.key for a in store.open_alerts()}:
            assert time.monotonic() < deadline, daemon.log.read_text()[-2000:]
            time.sleep(0.1)
        [record] = [a for a in store.recent_alerts(50) if a.key == gone]
        assert record.resolved_at is not None
        assert (record.kind, record.severity) == ("zone-health", Severity.HIGH)
        assert daemon.stop() == 0
    finally:
        store.close()


def _rendered(report: dict[str, object], width: int, height: int) -> list[str]:
    console = Console(
        width=width, height=height, record=True, force_terminal=True, file=io.StringIO()
    )
    terminal.print_report(report, console)
    return console.export_text().splitlines()


def test_at_80x24_every_pool_state_and_open_critical_alert_come_first(
    listed_config: Path, store_url: str
) -> None:
    summary = "127.0.0.20 (high-risk) listed on bl"
    key = alert_key(AlertKind.LISTING, "high-risk", "127.0.0.20", "bl")
    store = open_store(store_url)
    try:
        critical = Alert(AlertKind.LISTING, Severity.CRITICAL, key, summary, datetime.now(UTC))
        assert store.claim_alerts([critical], timedelta(hours=1)) == [True]
    finally:
        store.close()
    code, out = run("report", "--config", str(listed_config), "--json")
    assert code == 0
    report = json.loads(out)

    screen = "\n".join(_rendered(report, 80, 24)[:24])
    assert "normal (normal) healthy" in screen
    assert "high-risk (high)" in screen
    assert f"CRITICAL listing: {summary}" in screen

    short = "\n".join(_rendered(report, 80, 12)[:12])  # the IP tables cannot fit: summarised
    assert "high-risk (high)" in short
    assert f"CRITICAL listing: {summary}" in short
    assert "127.0.0.20 active on bl" in short  # the summary keeps the listed IP
    assert "sent/cap" not in short  # no full IP table (its header)

    tall = "\n".join(_rendered(report, 80, 200))
    assert "sent/cap" in tall  # room enough: the full tables
    assert "127.0.0.11" in tall


# A high-risk pool of one active IP and two standbys, none of them listed on bl.test.
STANDBY_POOLS = POOLS.replace(
    'ips = ["127.0.0.20", "127.0.0.21"]\nstandby = ["127.0.0.22"]',
    'ips = ["127.0.0.24"]\nstandby = ["127.0.0.25", "127.0.0.26"]',
)


def test_a_healthy_high_risk_pool_with_standbys_scores_100(
    rbldnsd: Rbldnsd, tmp_path: Path, store_url: str
) -> None:
    """Issue 14: such a pool showed "score 33" (standbys counted as missing capacity)."""
    assert STANDBY_POOLS != POOLS
    config = make_config(tmp_path, rbldnsd=rbldnsd, database=store_url, pools=STANDBY_POOLS)
    assert run("check", "--config", str(config), "--pool", "high-risk")[0] == 0  # all clean
    code, out = run("report", "--config", str(config), "--json")
    assert code == 0
    [high] = [p for p in json.loads(out)["pools"] if p["name"] == "high-risk"]
    assert sorted(ip["state"] for ip in high["ips"]) == ["active", "standby", "standby"]
    assert (high["health"], high["summary"]["score"]) == ("healthy", 100)

    code, out = run("report", "--config", str(config))
    assert code == 0
    assert "high-risk (high) healthy score 100" in out
