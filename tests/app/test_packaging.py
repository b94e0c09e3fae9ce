"""What a packager and a postmaster rely on (issue 14.7): the systemd unit and its
readiness notification, the logrotate snippet, help that stands in for a man
page, and ``db upgrade`` saying which revision it found and left."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hrmonitor.adapters.store import migrate
from hrmonitor.cli import COMMANDS, main
from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.peers import require_binary

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
UNIT = CONTRIB / "systemd" / "hrmonitor.service"
LOGROTATE = CONTRIB / "logrotate" / "hrmonitor"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_db_upgrade_prints_the_revision_before_and_after(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    code, out = run("db", "upgrade", "--config", str(config))
    assert code == 0
    # The shipped head, not a literal: every new migration moves it.
    (head,) = migrate.SHIPPED_HEADS
    assert out.strip() == f"database upgraded: revision none (empty) -> {head}"
    code, out = run("db", "upgrade", "--config", str(config))
    assert code == 0
    assert out.strip() == f"database already current: revision {head}"


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's; $NOTIFY_SOCKET names it."""
    # A short directory: a Unix socket's path must fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="hrm-notify-", dir="/tmp"))
    path = directory / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield receiver
    finally:
        receiver.close()
        shutil.rmtree(directory)


@pytest.mark.slow
def test_the_daemon_tells_systemd_when_it_is_ready_and_when_it_drains(
    notify_socket: socket.socket, daemon_process: DaemonFactory, tmp_path: Path
) -> None:
    daemon = daemon_process(make_config(tmp_path))
    ready = notify_socket.recv(4096).decode().splitlines()
    assert ready[0] == "READY=1"
    assert f"STATUS=relaying on port {daemon.port}" in ready
    assert daemon.stop() == 0
    assert notify_socket.recv(4096).decode().splitlines()[0] == "STOPPING=1"


def test_the_systemd_unit_verifies_and_is_a_notify_unit_with_reload(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    text = UNIT.read_text()
    assert "\nType=notify\n" in text
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in text
    assert "\nRestartPreventExitStatus=2\n" in text  # a bad config does not restart-loop
    # systemd-analyze checks every key and that ExecStart is executable: point it at ours.
    hrmonitor = Path(sys.executable).with_name("hrmonitor")
    unit = tmp_path / "hrmonitor.service"
    unit.write_text(text.replace("/usr/local/bin/hrmonitor", str(hrmonitor)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "hrmonitor.service" not in done.stderr, done.stderr  # no warning about the unit


def test_the_logrotate_snippet_rotates_a_log_the_daemon_keeps_appending_to(
    tmp_path: Path,
) -> None:
    logrotate = require_binary("logrotate")
    logs = tmp_path / "log"
    logs.mkdir()
    log = logs / "hrmonitor.log"
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    snippet = tmp_path / "logrotate.conf"
    snippet.write_text(
        LOGROTATE.read_text()
        .replace("/var/log/hrmonitor", str(logs))
        .replace("su hrmonitor hrmonitor", f"su {user} {group}")
    )
    with log.open("a") as writer:  # the daemon's stderr, appended to (StandardError=append:)
        writer.write("before rotation\n")
        writer.flush()
        done = subprocess.run(
            [logrotate, "--force", "--state", str(tmp_path / "state"), str(snippet)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        writer.write("after rotation\n")
    rotated = [p for p in logs.iterdir() if p != log]
    assert len(rotated) == 1  # delaycompress: the newest rotation stays plain text
    assert rotated[0].read_text() == "before rotation\n"
    assert log.read_text() == "after rotation\n"  # copytruncate: the writer carried on


def test_help_stands_in_for_a_man_page() -> None:
    code, out = run("--help")
    assert code == 0
    for section in ("CONFIGURATION", "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f"\n  {section}" in out
    assert "HRMONITOR_CONFIG" in out
    # Every command, and every subcommand of a group, explains itself and its options.
    names = [[name] for name in COMMANDS]
    names += [[group, sub] for group in COMMANDS for sub in _subcommands(group)]
    assert ["ip", "retire"] in names
    for name in names:
        code, out = run(*name, "--help")
        assert code == 0, name
        description = out.split("\n\n")[1].strip()
        assert len(description) > 20, (name, description)
        options = out.split("Options:\n", 1)[1]
        for line in options.splitlines():
            if line.startswith("  -"):
                assert "  " in line.strip(), (name, line)  # a help text after the flag


def _subcommands(name: str) -> list[str]:
    context = click.Context(main)
    command = main.get_command(context, name)
    return sorted(command.commands) if isinstance(command, click.Group) else []
