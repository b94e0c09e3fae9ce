"""``hrmonitor ip ...``: operator actions through a real config and store; errors exit 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hrmonitor.adapters.store import open_store
from hrmonitor.cli import HrmonitorGroup
from hrmonitor.cli.ip import ip_group, parse_until
from hrmonitor.core.model import IPState
from hrmonitor.errors import OperatorError
from tests.fixtures.app_config import make_config


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[click.Group, Path]:
    monkeypatch.setenv("USER", "alice")
    config = make_config(tmp_path)
    group = HrmonitorGroup("hrmonitor")  # main's error translation, without its other commands
    group.add_command(ip_group)
    return group, config


def run(cli: tuple[click.Group, Path], *args: str) -> tuple[int, str]:
    group, config = cli
    result = CliRunner().invoke(group, ["ip", *args, "--config", str(config)])
    return result.exit_code, result.output


def state(cli: tuple[click.Group, Path], ip: str) -> IPState:
    store = open_store(f"sqlite:///{cli[1].parent / 'hrmonitor.db'}")
    try:
        record = store.ip_record(ip)
        assert record is not None
        return record.state
    finally:
        store.close()


def test_retire_is_applied_and_audited_with_the_operator(cli: tuple[click.Group, Path]) -> None:
    """A valid retire moves the IP, prints the change and audits operator:<$USER>."""
    code, output = run(cli, "retire", "127.0.0.20", "--reason", "ticket 7")
    assert code == 0, output
    assert "127.0.0.20 (high-risk): active -> retired: ticket 7" in output
    assert state(cli, "127.0.0.20") is IPState.RETIRED
    store = open_store(f"sqlite:///{cli[1].parent / 'hrmonitor.db'}")
    try:
        [event] = [e for e in store.audit_trail("127.0.0.20") if e.kind == "state"]
    finally:
        store.close()
    assert (event.actor, event.reason) == ("operator:alice", "ticket 7")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("retire", "127.0.0.99", "--reason", "x"), "not an IP of any configured pool"),
        (("retire", "not-an-ip", "--reason", "x"), "is not an IP address"),
        (("retire", "127.0.0.20"), "Missing option '--reason'"),
        (("retire", "127.0.0.20", "--reason", " "), "--reason is required"),
        (("restore", "127.0.0.20", "--reason", "x"), "it is active"),
        (("enable", "127.0.0.20", "--reason", "x"), "it is active"),
        (("disable", "127.0.0.20", "--reason", "x", "--until", "soon"), "neither a time"),
    ],
)
def test_bad_operator_commands_exit_2_and_change_nothing(
    cli: tuple[click.Group, Path], args: tuple[str, ...], message: str
) -> None:
    """Unknown IP, missing reason, impossible transition: exit 2, a message, no change."""
    code, output = run(cli, *args)
    assert code == 2, output
    assert message in output
    if (cli[1].parent / "hrmonitor.db").exists():
        assert state(cli, "127.0.0.20") is IPState.ACTIVE


def test_last_eligible_ip_needs_force(cli: tuple[click.Group, Path]) -> None:
    """Disabling both normal IPs: the second is refused without --force, applied with it."""
    assert run(cli, "disable", "127.0.0.10", "--reason", "x")[0] == 0
    code, output = run(cli, "disable", "127.0.0.11", "--reason", "x")
    assert code == 2
    assert "last eligible IP of pool normal" in output
    assert state(cli, "127.0.0.11") is IPState.ACTIVE
    code, output = run(cli, "disable", "127.0.0.11", "--reason", "x", "--force")
    assert code == 0, output
    assert state(cli, "127.0.0.11") is IPState.DISABLED


def test_until_accepts_durations_and_times() -> None:
    """--until 2h counts from now; a naive ISO time is UTC; garbage is an OperatorError."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_until("2h", now) == now + timedelta(hours=2)
    assert parse_until("2026-12-01T08:00", now) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert parse_until(None, now) is None
    with pytest.raises(OperatorError):
        parse_until("tomorrow-ish", now)
