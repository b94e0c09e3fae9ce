"""``hrmonitor bounce FILE... [--json]``: bounce classification of message files."""

from __future__ import annotations

from pathlib import Path

import click

from hrmonitor.adapters.rule_files import SHIPPED_RULES, load_bounce_patterns
from hrmonitor.cli.options import print_json
from hrmonitor.core.bounce.classify import BounceReport, classify_message
from hrmonitor.errors import RuleError

DEFAULT_RULES = Path("rules/bounce.toml")
EXIT_USAGE = 2


def default_rules_path() -> Path | None:
    for path in (DEFAULT_RULES, SHIPPED_RULES):
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


@click.command("bounce")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per file.")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Bounce pattern file (default: ./rules/bounce.toml, else the shipped one).",
)
@click.pass_context
def bounce_command(
    ctx: click.Context, files: tuple[str, ...], as_json: bool, rules_path: str | None
) -> None:
    """Classify message files: dsn, nonstandard-bounce, mdn, arf, autoreply or none."""
    path = Path(rules_path) if rules_path else default_rules_path()
    try:
        patterns = load_bounce_patterns(path) if path is not None else None
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
