"""The command line: parses arguments, configures logging, calls the app.

A missing or bad config, rule file or argument exits 2 with a message that
names the file, key and problem (SPEC "Command line").

Each command's module is imported only when that command runs (or when help
lists it): ``hrmonitor check`` is a Nagios probe started every few minutes and
should not pay for importing the controller, the router or the bounce parser.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import click

from hrmonitor.cli.logs import configure_logging
from hrmonitor.cli.options import CONFIG_ENV, QuickExit
from hrmonitor.errors import ConfigError, HrmonitorError, OperatorError

EXIT_USAGE = 2

# Command name -> "module:attribute" of its click command.
COMMANDS: Mapping[str, str] = {
    "auth": "hrmonitor.cli.commands:auth_group",
    "bounce": "hrmonitor.cli.bounce:bounce_command",
    "check": "hrmonitor.cli.commands:check_command",
    "config": "hrmonitor.cli.config:config_group",
    "db": "hrmonitor.cli.commands:db_group",
    "history": "hrmonitor.cli.commands:history_command",
    "ip": "hrmonitor.cli.ip:ip_group",
    "mailq": "hrmonitor.cli.queue:mailq_command",
    "queue": "hrmonitor.cli.queue:queue_group",
    "report": "hrmonitor.cli.commands:report_command",
    "route": "hrmonitor.cli.route:route_command",
    "rules": "hrmonitor.cli.commands:rules_group",
    "run": "hrmonitor.cli.commands:run_command",
}


class HrmonitorGroup(click.Group):
    """Translates hrmonitor's own errors into a one-line message and exit 2.

    ``lazy_commands`` (name -> "module:attribute") are imported on first use.
    """

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            module, _, attribute = self.lazy_commands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # An unknown name: load every command, so that click's "Did you mean ..." sees them all.
        if args and self.get_command(ctx, click.utils.make_str(args[0])) is None:
            for name in self.lazy_commands:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            for problem in error.problems:  # one line per problem: file: key: problem
                click.echo(f"hrmonitor: {problem}", err=True)
            ctx.exit(EXIT_USAGE)
        except OperatorError as error:
            click.echo(f"hrmonitor: {error}", err=True)
            ctx.exit(EXIT_USAGE)
        except HrmonitorError as error:
            click.echo(f"hrmonitor: {error}", err=True)
            ctx.exit(EXIT_USAGE)


MAIN_HELP = """hrmonitor: keeps an outbound mail service's IP reputation safe.

It sweeps DNS blocklists for every pool IP, relays the tenants' mail from
the pool each message needs (high-risk for spam, bounces and senders whose
domain has no A or MX; normal otherwise), rotates listed high-risk IPs out
and standby IPs in, and tells operators. `hrmonitor COMMAND --help` explains
each command; `hrmonitor run` is the daemon, the others are one-shot tools
that work against the daemon's database while it runs.

\b
CONFIGURATION
  One TOML file: --config, else $HRMONITOR_CONFIG, else ./config.toml.
  config.example.toml documents every key. A missing or bad config, rule
  file or argument exits 2 naming the file, key and problem.

\b
SIGNALS (hrmonitor run)
  SIGTERM, SIGINT  stop accepting mail, drain deliveries in flight, exit 0
  SIGHUP           reload the config and rule files (contrib/systemd's
                   ExecReload)
  Under systemd (Type=notify) the daemon sends READY=1 once it accepts mail.

\b
EXIT STATUS
  0  success (check: every answer clean)
  1  check: WARNING (a lower-severity listing, a zone or answer missing)
  2  a bad config, rule file or argument (check: CRITICAL)
  3  check: UNKNOWN (nothing trustworthy learnt)

\b
ENVIRONMENT
  HRMONITOR_CONFIG  the config file when --config is not given
  NOTIFY_SOCKET     set by systemd for Type=notify units

\b
FILES
  /etc/hrmonitor/config.toml       the config (contrib/systemd's unit)
  contrib/systemd/hrmonitor.service, contrib/logrotate/hrmonitor
"""


@click.group(cls=HrmonitorGroup, lazy_commands=COMMANDS, help=MAIN_HELP)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    default=None,
    help="Config file (default: $HRMONITOR_CONFIG or ./config.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug and libraries).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text (ISO time with offset, level, logger, message) or JSON lines.",
)
@click.version_option(package_name="hrmonitor")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int, log_format: str) -> None:
    ctx.obj = {"config_path": config_path}
    # The daemon tells what it does (INFO); one-shot commands only what goes wrong.
    quiet = logging.INFO if ctx.invoked_subcommand == "run" else logging.WARNING
    level = max(logging.DEBUG, quiet - 10 * verbose)
    configure_logging(
        level,
        quiet_libraries=verbose < 2,  # -vv shows the libraries again
        log_format="json" if log_format == "json" else "text",
    )


def entry() -> None:
    """The console script and ``python -m hrmonitor``: the CLI, then the process's end.

    ``check`` is a probe that a monitoring system starts every few minutes. When it
    raises :class:`QuickExit` its verdict is printed and its store and sockets are
    closed; what remains is the interpreter's teardown, which frees every module's
    objects one by one (0.1-0.25 s after a 4,096-IP sweep, a tenth of the run). So
    the output and the log handlers are flushed and the process ends there, with
    the verdict as its status. Every other command, and any error, exits normally.
    """
    try:
        main()
    except QuickExit as done:
        status = done.code if isinstance(done.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(status)
