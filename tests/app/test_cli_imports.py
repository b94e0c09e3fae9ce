"""Each command imports only what it runs: ``check`` is a Nagios probe started every few minutes.

The CLI loads a command's module when that command runs; these tests run the
real ``hrmonitor`` in a fresh interpreter and look at what it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from hrmonitor.cli import COMMANDS, main
from tests.fixtures.app_config import make_config
from tests.fixtures.rbldnsd import Rbldnsd

# Runs the CLI with the arguments after the first; at exit, writes the names of
# the modules it imported as JSON to the file named by the first.
_PROBE = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w", encoding="utf-8").write(json.dumps(sorted(sys.modules))))
from hrmonitor.cli import main
main(prog_name="hrmonitor")
"""

# What a check of a database already at the shipped migrations never needs.
NOT_FOR_CHECK = {
    "hrmonitor.services.rotation.controller",
    "hrmonitor.services.relay.routing",
    "hrmonitor.services.report",
    "hrmonitor.services.relay.runner",
    "hrmonitor.adapters.store.queue.repository",
    "hrmonitor.adapters.store.queue.schema",
    "hrmonitor.adapters.store.queue.delivery",
    "hrmonitor.adapters.rspamd",
    "hrmonitor.services.relay.delivery",
    "hrmonitor.services.relay.acceptance",
    "hrmonitor.adapters.dns.mail",
    "hrmonitor.adapters.rule_files",
    "hrmonitor.adapters.terminal",
    "hrmonitor.cli.ip",
    "hrmonitor.cli.route",
    "hrmonitor.cli.bounce",
    "hrmonitor.cli.rulefiles",
    "hrmonitor.core.bounce.classify",
    "hrmonitor.core.surge",
    "hrmonitor.core.surge.tracker",
    "httpx",
    "aiosmtplib",
    "aiosmtpd",
    "apscheduler",
    "rich",
    "alembic",
}


def run_probe(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules.json"
    process = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return process, set(json.loads(out.read_text(encoding="utf-8")))


def test_check_imports_neither_the_other_commands_nor_the_alert_transports(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0, upgraded.output

    process, modules = run_probe(tmp_path, "check", "--config", str(config), "--json", "127.0.0.20")

    assert process.returncode == 2, process.stderr
    [row] = json.loads(process.stdout)["results"]
    assert (row["ip"], row["status"]) == ("127.0.0.20", "listed")
    assert "hrmonitor.app.oneshot" in modules
    assert sorted(modules & NOT_FOR_CHECK) == []


def test_help_lists_every_command_and_loads_their_modules_only_then(tmp_path: Path) -> None:
    process, modules = run_probe(tmp_path, "--help")

    assert process.returncode == 0, process.stderr
    listed = process.stdout.split("Commands:\n", 1)[1].split()
    for name in COMMANDS:
        assert name in listed
    assert "hrmonitor.cli.ip" in modules


def test_a_bare_start_imports_no_command_module(tmp_path: Path) -> None:
    process, modules = run_probe(tmp_path, "--version")

    assert process.returncode == 0, process.stderr
    assert sorted(m for m in modules if m.startswith(("hrmonitor.cli.", "hrmonitor.app"))) == [
        "hrmonitor.cli.logs",  # the log set-up every command shares, no command of its own
        "hrmonitor.cli.options",
    ]


def test_a_mistyped_command_is_answered_with_the_closest_command(tmp_path: Path) -> None:
    process, _ = run_probe(tmp_path, "chek")

    assert process.returncode == 2
    assert "No such command 'chek'. Did you mean 'check'?" in process.stderr


def test_every_lazy_command_is_a_click_command_of_that_name() -> None:
    context = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command), name
        assert command.name == name
    assert main.list_commands(context) == sorted(COMMANDS)


# What classifying message files never needs: ``hrmonitor bounce`` runs once per
# batch of files, so its start-up is part of every batch (issue 15's speed target).
NOT_FOR_BOUNCE = {
    "pydantic",
    "pydantic_core",
    "hrmonitor.config.loading",
    "hrmonitor.config.sections",
    "hrmonitor.core.routing.rules",
    "hrmonitor.core.feedback.rules",
    "hrmonitor.app.oneshot",
    "sqlalchemy",
    "dns",
    "httpx",
    "aiosmtplib",
    "aiosmtpd",
    "apscheduler",
    "rich",
    "alembic",
    "importlib.resources",
}
BOUNCE = Path(__file__).resolve().parents[1] / "data" / "bounces" / "flufl" / "hotpop_01.txt"


def test_bounce_imports_no_config_models_store_or_network_clients(tmp_path: Path) -> None:
    process, modules = run_probe(tmp_path, "bounce", "--json", str(BOUNCE))

    assert process.returncode == 0, process.stderr
    [report] = json.loads(process.stdout)
    assert report["kind"] != "none"
    assert "hrmonitor.core.bounce.classify" in modules
    assert sorted(modules & NOT_FOR_BOUNCE) == []


def test_bounce_with_a_config_loads_it(tmp_path: Path) -> None:
    config = make_config(tmp_path)

    process, modules = run_probe(tmp_path, "bounce", "--json", "--config", str(config), str(BOUNCE))

    assert process.returncode == 0, process.stderr
    assert "hrmonitor.config.loading" in modules
