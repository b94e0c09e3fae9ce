"""Options every command shares, and the one way commands turn errors into exit status 2.

Every command imports this module, and so does the bare ``hrmonitor``: it loads
the config models (pydantic) only when a command loads a config, so that
``hrmonitor bounce FILE`` without ``--config`` never pays for them.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hrmonitor.config.files import DEFAULT_CONFIG_PATH

if TYPE_CHECKING:
    from hrmonitor.config.loading import Config

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_ENV = "HRMONITOR_CONFIG"


def config_option(command: F) -> F:
    """``--config PATH`` on a command; falls back to the group's, then $HRMONITOR_CONFIG."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Config file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG_PATH}).",
    )(command)


def config_path(value: str | None) -> str:
    if value:
        return value
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if isinstance(ctx.obj, dict) and ctx.obj.get("config_path"):
            return str(ctx.obj["config_path"])
        ctx = ctx.parent
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load(value: str | None) -> Config:
    """Load the config a command was pointed at; ConfigError becomes exit 2 in main()."""
    from hrmonitor.config.loading import load_config  # noqa: PLC0415 (pydantic: only when used)

    return load_config(config_path(value))


def operator_actor() -> str:
    """``operator:<name>`` from $USER (the login name when $USER is unset): the audit's actor."""
    if name := os.environ.get("USER"):
        return f"operator:{name}"
    import getpass  # noqa: PLC0415 (rarely needed)

    name = getpass.getuser()
    return f"operator:{name}"


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def passes_config(command: F) -> F:
    """Decorator: adds --config and hands the command a loaded Config as ``config``."""

    @config_option
    @functools.wraps(command)
    def wrapper(*args: Any, config_path: str | None, **kwargs: Any) -> Any:
        return command(*args, config=load(config_path), **kwargs)

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """Indented for a person at a terminal; compact (and C-encoded, so fast) for a pipe."""
    indent = 2 if sys.stdout.isatty() else None
    click.echo(json.dumps(data, indent=indent, default=str))


class QuickExit(SystemExit):
    """Exit with this status, and, from the console script, skip the interpreter's teardown.

    For a one-shot probe whose output is printed and whose store and sockets are
    closed: see :func:`hrmonitor.cli.entry`. In-process callers (click's test
    runner) see an ordinary SystemExit.
    """
