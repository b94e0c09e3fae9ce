"""``hrmonitor bounce FILE... [--json]``: bounce classification of message files."""

from __future__ import annotations

import os
from pathlib import Path

import click

from hrmonitor.adapters.rule_files import load_bounce_files
from hrmonitor.cli.options import CONFIG_ENV, config_option, config_path, load, print_json
from hrmonitor.config.files import DEFAULT_CONFIG_PATH, RuleKind, shipped_rules
from hrmonitor.core.bounce.classify import BounceReport, classify_message
from hrmonitor.errors import RuleError

DEFAULT_RULES = Path("rules/bounce.toml")
EXIT_USAGE = 2


def default_rules_path() -> Path | None:
    for path in (DEFAULT_RULES, shipped_rules(RuleKind.BOUNCE)):
        if path.is_file():
            return path
    return None


def report_data(file: str, report: BounceReport) -> dict[str, object]:
    """The SPEC ``bounce --json`` object for one file (extra fields after the required ones)."""
    return {
        "file": file,
        "kind": report.kind.value,
        "recipients": [
            {
                "address": recipient.address,
                "action": recipient.action,
                "status": recipient.status,
                "reason": recipient.reason.value,
                "hard": recipient.hard,
                "reason_class": recipient.reason_class,
                "enhanced_status": recipient.status,
                "remote_mta": recipient.remote_mta,
                "command": recipient.command,
                "diagnostic": recipient.diagnostic,
            }
            for recipient in report.recipients
        ],
        "message_id": report.message_id,
        "original_message_id": report.original_message_id,
        "original_envelope_id": report.original_envelope_id,
    }


def _plain_lines(file: str, report: BounceReport) -> list[str]:
    lines = [f"{file}: {report.kind.value}"]
    for recipient in report.recipients:
        hardness = "hard" if recipient.hard else "soft"
        if not recipient.failed:
            hardness = "-"
        lines.append(
            f"  {recipient.address} {recipient.action} {recipient.status} "
            f"{recipient.reason.value} {hardness}"
        )
    return lines


def rules_for(rules_path: str | None, config_value: str | None) -> list[Path]:
    """The pattern files, layered as the daemon layers them (later ones tried first).

    ``--rules``: that file alone. Else, when a config was named (``--config``, the
    group's, $HRMONITOR_CONFIG) or ./config.toml exists: what the daemon reads, the
    shipped file and then the config's ``[bounces] patterns``. Else ./rules/bounce.toml
    or the shipped file. A named config that is missing or bad is an error (exit 2),
    as for every command.
    """
    if rules_path:
        return [Path(rules_path)]
    path = config_path(config_value)
    named = config_value or os.environ.get(CONFIG_ENV) or path != DEFAULT_CONFIG_PATH
    if named or Path(path).is_file():
        return [f.path for f in load(path).rule_files(RuleKind.BOUNCE)]
    default = default_rules_path()
    return [] if default is None else [default]


@click.command("bounce")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per file.")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Bounce pattern file, used alone: instead of the shipped patterns and the config's.",
)
@config_option
@click.pass_context
def bounce_command(
    ctx: click.Context,
    files: tuple[str, ...],
    as_json: bool,
    rules_path: str | None,
    config_path: str | None,
) -> None:
    """Classify message files: dsn, nonstandard-bounce, mdn, arf, autoreply or none."""
    paths = rules_for(rules_path, config_path)
    try:
        patterns = load_bounce_files(paths) if paths else None
    except RuleError as error:
        click.echo(f"hrmonitor: {error}", err=True)
        ctx.exit(EXIT_USAGE)
    contents: list[tuple[str, bytes]] = []
    for file in files:
        try:
            contents.append((file, Path(file).read_bytes()))
        except OSError as error:  # every file is read before any output: all or nothing
            click.echo(f"hrmonitor: {file}: cannot read: {error.strerror or error}", err=True)
            ctx.exit(EXIT_USAGE)
    reports = [(file, classify_message(raw, patterns=patterns)) for file, raw in contents]
    if as_json:
        print_json([report_data(file, report) for file, report in reports])
        return
    for file, report in reports:
        for line in _plain_lines(file, report):
            click.echo(line)
