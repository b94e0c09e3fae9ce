"""The daemon's log as an operator reads it: ISO times with offset, no library chatter, JSON lines.

A real ``hrmonitor run`` process on a fresh database (so Alembic migrates and
APScheduler adds its jobs, both of which used to log INFO lines), started and
stopped with SIGTERM; its stderr is the log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.rbldnsd import Rbldnsd

pytestmark = [pytest.mark.slow, pytest.mark.rbldnsd]

ISO_WITH_OFFSET = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
TEXT_LINE = re.compile(rf"^{ISO_WITH_OFFSET} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
LIBRARIES = ("apscheduler", "alembic", "httpx", "httpcore")


def records(log: Path) -> list[str]:
    """Log records: a line that starts a record (tracebacks continue the one before)."""
    return [line for line in log.read_text().splitlines() if line and not line[0].isspace()]


def test_text_lines_carry_an_iso_time_with_offset_and_no_library_chatter(
    tmp_path: Path, rbldnsd: Rbldnsd, daemon_process: DaemonFactory
) -> None:
    daemon = daemon_process(make_config(tmp_path, rbldnsd=rbldnsd))
    assert daemon.stop() == 0
    lines = records(daemon.log)
    assert any("hrmonitor running:" in line for line in lines)
    assert any("hrmonitor stopping" in line for line in lines)
    for line in lines:
        match = TEXT_LINE.match(line)
        assert match, f"not a timestamped record: {line!r}"
        logger = line.split(" ", 3)[2].rstrip(":")
        if match.group(1) in ("DEBUG", "INFO"):
            assert not logger.startswith(LIBRARIES), f"library chatter at INFO: {line!r}"


def test_log_format_json_writes_one_object_per_line(
    tmp_path: Path, rbldnsd: Rbldnsd, daemon_process: DaemonFactory
) -> None:
    daemon = daemon_process(make_config(tmp_path, rbldnsd=rbldnsd), ("--log-format", "json"))
    assert daemon.stop() == 0
    entries = [json.loads(line) for line in daemon.log.read_text().splitlines() if line]
    assert entries
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= entry.keys()
        assert re.fullmatch(ISO_WITH_OFFSET, entry["ts"]), entry["ts"]
    running = [e for e in entries if e["msg"].startswith("hrmonitor running:")]
    assert len(running) == 1
    assert running[0]["logger"] == "hrmonitor.app.daemon"
    assert running[0]["level"] == "INFO"
