"""``hrmonitor run``: scheduled sweeps keep the listing history; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hrmonitor.adapters.store import open_store
from hrmonitor.app.daemon import Daemon
from hrmonitor.config.loading import load_config
from tests.fixtures.app_config import make_config
from tests.fixtures.daemon_lab import until
from tests.fixtures.rbldnsd import Rbldnsd

pytestmark = pytest.mark.slow


async def test_scheduled_sweeps_open_and_close_a_listing_interval(
    rbldnsd: Rbldnsd, tmp_path: Path, store_url: str
) -> None:
    """The whole daemon on SQLite and on PostgreSQL: sweeps, listings, rotation, queue."""
    rbldnsd.delist_ip("127.0.0.21")
    config = load_config(make_config(tmp_path, rbldnsd=rbldnsd, database=store_url))
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    store = open_store(config.database.url)
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)

        def open_listings() -> set[str]:
            return {x.ip for x in store.current_listings()}

        await until(lambda: "127.0.0.20" in open_listings(), within=15)
        assert "127.0.0.21" not in open_listings()

        rbldnsd.list_ip("127.0.0.21", code="127.0.0.4")
        await until(lambda: "127.0.0.21" in open_listings(), within=15)
        rbldnsd.delist_ip("127.0.0.21")
        await until(lambda: "127.0.0.21" not in open_listings(), within=15)
        [interval] = store.listing_history("127.0.0.21")
        assert interval.codes == ("127.0.0.4",)
        assert interval.cleared_at is not None
        assert interval.first_seen <= interval.last_seen <= interval.cleared_at
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
        store.close()


def test_the_daemon_process_stops_cleanly_on_sigterm(rbldnsd: Rbldnsd, tmp_path: Path) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    with subprocess.Popen(
        [sys.executable, "-m", "hrmonitor", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if "hrmonitor running" in line:
                    break
            else:
                pytest.fail(f"daemon did not start: exit {process.wait()}")
            process.send_signal(signal.SIGTERM)
            _, rest = process.communicate(timeout=15)
            assert process.returncode == 0, rest
            assert "hrmonitor stopping" in rest
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_prometheus_metrics_show_sweeps_and_zone_health(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = load_config(make_config(tmp_path, rbldnsd=rbldnsd, metrics="127.0.0.1:0"))
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)
        assert daemon.metrics_port
        url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"

        swept = 'hrmonitor_sweeps_total{outcome="ok",pool="high-risk"}'
        # the exposition server is a thread of its own: a blocking scrape is fine here
        await until(lambda: swept in httpx.get(url, timeout=5).text, within=15)
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(url)).text
        assert 'hrmonitor_zone_health{health="ok",zone="bl"} 1.0' in text
        assert 'hrmonitor_dnsbl_answers_total{status="listed",zone="bl"}' in text
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
