"""The command line: parses arguments, configures logging, calls the app.

A missing or bad config, rule file or argument exits 2 with a message that
names the file, key and problem (SPEC "Command line").
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from hrmonitor.cli.options import CONFIG_ENV
from hrmonitor.errors import ConfigError, HrmonitorError, OperatorError

EXIT_USAGE = 2


class HrmonitorGroup(click.Group):
    """Translates hrmonitor's own errors into a one-line message and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, OperatorError) as error:
            click.echo(f"hrmonitor: {error}", err=True)
            ctx.exit(EXIT_USAGE)
        except HrmonitorError as error:
            click.echo(f"hrmonitor: {error}", err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=HrmonitorGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    default=None,
    help="Config file (default: $HRMONITOR_CONFIG or ./config.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="hrmonitor")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """hrmonitor: keeps an outbound mail service's IP reputation safe."""
    ctx.obj = {"config_path": config_path}
    # The daemon tells what it does (INFO); one-shot commands only what goes wrong.
    quiet = logging.INFO if ctx.invoked_subcommand == "run" else logging.WARNING
    level = max(logging.DEBUG, quiet - 10 * verbose)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    from hrmonitor.cli import commands  # noqa: PLC0415  (commands import main's siblings)

    for command in commands.ALL:
        main.add_command(command)


_register()
