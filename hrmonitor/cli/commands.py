"""The daemon, monitoring and store commands; other modules here hold route, bounce and ip.

Each command imports the part of the app it runs when it runs, and ``hrmonitor.cli``
imports this module only for a command of it: ``hrmonitor check`` is a Nagios
probe started every few minutes, and should not pay for importing the SMTP
relay, the controller, the scheduler and the terminal renderer it never uses.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from hrmonitor.cli.options import QuickExit, config_option, json_option, load, print_json


@click.command("run")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Log to this file instead of stderr; SIGHUP reopens it (for logrotate).",
)
@config_option
def run_command(config_path: str | None, log_file: str | None) -> None:
    """Run the daemon: scheduler, listener, queue runner, controller, watcher.

    SIGTERM/SIGINT drain and stop; SIGHUP reopens the log file and reloads the config.
    """
    from hrmonitor.app.daemon import run_daemon  # noqa: PLC0415
    from hrmonitor.cli.logs import configure_logging  # noqa: PLC0415

    config = load(config_path)
    if log_file is not None:  # the group set up stderr; the same level and format, to the file
        group = click.get_current_context().find_root().params
        configure_logging(
            logging.getLogger().level,
            filename=log_file,
            quiet_libraries=group.get("verbose", 0) < 2,
            log_format="json" if group.get("log_format") == "json" else "text",
        )
    run_daemon(config)


@contextmanager
def _sweep_collector() -> Iterator[None]:
    """The cyclic collector tuned for one sweep: a burst of short-lived objects, few cycles.

    The modules and the config outlive the sweep: frozen out of the collector's
    way, its full collections walk only what the sweep made, not every object of
    SQLAlchemy and pydantic. Young collections every 50,000 allocations, not 700,
    promote far fewer of the sweep's short-lived objects into the older
    generations. For 4,096 IPs x 10 lists the collector's time drops from ~0.5 s
    to <0.1 s. Everything is put back after, for callers in-process (the tests).
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


CHECK_HELP = """One sweep now, printed as a Nagios plugin's output. Exit 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN.

\b
IPS are checked, or every IP of --pool, or (neither given) every IP of every pool.
The first line is the status line with performance data:
  DNSBL CRITICAL - 1 listed of 5 (bl: 127.0.0.20 SBL)|listed=1;;1 checked=5 ...
then one line per unhealthy zone, per listing and per list with unanswered lookups.
--json prints the zones and every answer instead (same exit status).

check never sends alerts: its exit status and output are the alert, and the
daemon tells the alert channels. --record says what it writes to the store:
listings (default) the answers of the zones that passed their self-test here
and the listings they open or close; all also the zones' health (for a check
run on the daemon's host, with its resolver); none nothing.
"""


@click.command("check", help=CHECK_HELP)
@click.argument("ips", nargs=-1)
@click.option("--pool", default=None, help="Check every IP of this pool.")
@click.option(
    "--record",
    type=click.Choice(["listings", "all", "none"]),
    default="listings",
    show_default=True,
    help="What the sweep writes to the store (see above).",
)
@json_option
@config_option
def check_command(
    ips: tuple[str, ...], pool: str | None, record: str, as_json: bool, config_path: str | None
) -> None:
    from hrmonitor.app.oneshot import CheckRecord, run_check  # noqa: PLC0415
    from hrmonitor.core.dnsbl.check import plugin_output  # noqa: PLC0415

    config = load(config_path)
    with _sweep_collector():
        outcome = asyncio.run(run_check(config, ips, pool, record=CheckRecord(record)))
    if as_json:
        print_json(outcome.data)
    else:
        # Plain lines, never wrapped or cut to a terminal's width: Nagios reads a pipe.
        lines = plugin_output(outcome.data["zones"], outcome.data["results"], outcome.verdict)
        click.echo("\n".join(lines))
    raise QuickExit(int(outcome.verdict))


@click.command("report")
@json_option
@click.option("--watch", is_flag=True, help="Refresh live until interrupted.")
@click.option("--every", default=5.0, show_default=True, help="Seconds between refreshes.")
@config_option
def report_command(as_json: bool, watch: bool, every: float, config_path: str | None) -> None:
    """The pool health report: pools side by side, each IP's state and listings."""
    from hrmonitor.app.oneshot import ReportSource, report_data  # noqa: PLC0415

    config = load(config_path)
    if as_json and not watch:
        print_json(report_data(config))
        return
    from hrmonitor.adapters import terminal  # noqa: PLC0415

    if not watch:
        terminal.print_report(report_data(config))
        return
    stop = threading.Event()
    # One store for the whole watch: a refresh is the report's queries, not a reconnect.
    with ReportSource(config) as source:
        try:
            if as_json:
                # NDJSON: one compact document per refresh and line, flushed, so `| jq -c`
                # or a collector reads each refresh as it comes (indented JSON would not).
                _every_refresh(
                    lambda: click.echo(json.dumps(source.read(), default=str)), every, stop
                )
            elif not sys.stdout.isatty():
                # A live redraw into a pipe shows nothing until it ends: one plain report
                # each time.
                _every_refresh(lambda: terminal.print_report(source.read()), every, stop)
            else:
                terminal.watch(source.read, every, stop.wait)
        except KeyboardInterrupt:
            stop.set()
        except BrokenPipeError:
            # The reader went away (`| head -1`): stop quietly, as cat or tail -f do.
            # The exit's own flush would fail again: point stdout at /dev/null (Python's
            # recipe).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _every_refresh(emit: Callable[[], None], every: float, stop: threading.Event) -> None:
    while True:
        emit()
        sys.stdout.flush()
        if stop.wait(every):
            return


@click.command("history")
@click.argument("ip")
@json_option
@config_option
def history_command(ip: str, as_json: bool, config_path: str | None) -> None:
    """An IP's listings and audit trail."""
    from hrmonitor.app.oneshot import history_data  # noqa: PLC0415

    data = history_data(load(config_path), ip)
    if as_json:
        print_json(data)
        return
    click.echo(f"{data['ip']}  pool {data['pool']}  state {data['state']}")
    click.echo("listings:")
    for listing in data["listings"]:
        cleared = listing["cleared_at"] or "open"
        codes = ",".join(listing["codes"])
        click.echo(f"  {listing['zone']} {codes} {listing['since']} .. {cleared}  {listing['txt']}")
    click.echo("audit:")
    for event in data["audit"]:
        change = f"{event['from']} -> {event['to']}" if event["to"] else event["kind"]
        click.echo(f"  {event['at']}  {change}  by {event['by']}: {event['reason']}")


@click.group("rules")
def rules_group() -> None:
    """Rule files: the DNSBL catalogue, routing rules, reply feedback, bounce patterns."""


@rules_group.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@config_option
def rules_check_command(files: tuple[str, ...], config_path: str | None) -> None:
    """Validate rule files (default: every rule file the config names). Exit 2 on problems."""
    from hrmonitor.cli.rulefiles import check_rule_files, configured_rule_files  # noqa: PLC0415

    targets = [Path(f) for f in files] or configured_rule_files(load(config_path))
    problems = check_rule_files(targets)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(2)
    click.echo(f"{len(targets)} rule file(s) valid")


@click.group("db")
def db_group() -> None:
    """The database: ``db upgrade`` applies the schema migrations and shows the revision."""


@db_group.command("upgrade")
@config_option
def db_upgrade_command(config_path: str | None) -> None:
    """Apply migrations and print the revision before and after.

    run and check migrate a database themselves; this is for an upgrade done by hand
    (before starting a new version on several nodes, say).
    """
    from hrmonitor.app.oneshot import upgrade_database  # noqa: PLC0415

    before, after = upgrade_database(load(config_path))
    if before == after:
        click.echo(f"database already current: revision {after}")
    else:
        click.echo(f"database upgraded: revision {before or 'none (empty)'} -> {after}")


@click.group("auth")
def auth_group() -> None:
    """SMTP AUTH users: ``auth hash USER`` prints USER's line for [listener] auth_file."""


@auth_group.command("hash")
@click.argument("user")
@click.password_option("--password", prompt="Password", help="Read from the prompt if not given.")
def auth_hash_command(user: str, password: str) -> None:
    """Print USER's line for [listener] auth_file (a scrypt hash of the password)."""
    from hrmonitor.core.credentials import hash_password  # noqa: PLC0415

    if ":" in user or not user.strip():
        raise click.BadParameter("a user name cannot be empty or contain ':'", param_hint="USER")
    click.echo(f"{user}:{hash_password(password, secrets.token_bytes(16))}")
