"""The daemon and ``check`` as processes when the DNSBL resolver cannot be reached.

The resolver is rbldnsd on loopback; the child's ``connect()`` to it fails
with ENETUNREACH (``tests/fixtures/faults.py``: what a host without a route
says; a loopback test cannot make the kernel say it). The other errors
(EHOSTUNREACH, ECONNREFUSED) are proved at the adapter edge in
``tests/adapters/test_dnsbl_network_errors.py``.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.faults import unreachable_env
from tests.fixtures.rbldnsd import Rbldnsd

pytestmark = pytest.mark.slow


def _wait_for(path: Path, text: str, within: float = 20.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        log = path.read_text()
        if text in log:
            return log
        time.sleep(0.1)
    pytest.fail(f"{text!r} not logged within {within}s:\n{path.read_text()[-3000:]}")


def test_the_daemon_runs_on_with_its_zones_unreachable_when_the_resolver_has_no_route(
    rbldnsd: Rbldnsd,
    tmp_path: Path,
    daemon_process: DaemonFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in unreachable_env(tmp_path, [rbldnsd.nameserver]).items():
        monkeypatch.setenv(name, value)
    daemon = daemon_process(make_config(tmp_path, rbldnsd=rbldnsd))  # the old code exited 1 here

    log = _wait_for(daemon.log, "[zone-health]")
    assert "unreachable" in log
    assert "DNSBL nameserver 127.0.0.1" in log
    assert "Network is unreachable" in log
    assert "Traceback" not in log
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:  # still serving mail
        assert client.noop()[0] == 250
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_check_reports_unknown_when_the_resolver_has_no_route(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    done = subprocess.run(
        [sys.executable, "-m", "hrmonitor", "check", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=unreachable_env(tmp_path, [rbldnsd.nameserver]),
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, done.stderr  # nothing trustworthy was learnt
    data = json.loads(done.stdout)
    assert data["zones"] == [{"name": "bl", "zone": "bl.test", "health": "unreachable"}]
    assert {row["status"] for row in data["results"]} == {"unknown"}
