"""``hrmonitor config check``: the config and everything it points at, every problem at once."""

from __future__ import annotations

import click

from hrmonitor.cli.options import config_option, load


@click.group("config")
def config_group() -> None:
    """The config file: check it, and every file and address it names, in one run."""


@config_group.command("check")
@click.option(
    "--ports",
    is_flag=True,
    help="Also check that the listener and metrics ports are free (not while the daemon runs).",
)
@config_option
def config_check_command(ports: bool, config_path: str | None) -> None:
    """Validate the config, its rule, auth, TLS and database paths. Exit 2 on problems.

    Every problem is printed, one line each: file: key: problem.
    """
    from hrmonitor.app.validate import config_problems  # noqa: PLC0415
    from hrmonitor.errors import raise_problems  # noqa: PLC0415

    config = load(config_path)
    raise_problems(config_problems(config, ports=ports))
    click.echo(f"{config.source}: valid")
