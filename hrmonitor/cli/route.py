"""``hrmonitor route FILE``: which pool a message would leave from, and why. Sends nothing.

The envelope defaults come from the message itself when not given: the
sender from ``Return-Path`` (else ``From``), the recipients from ``To``,
``Cc`` and ``Bcc``; the client defaults to 127.0.0.1 (local submission,
which the default ``trusted_filters`` trusts). Explaining a message never
counts towards its sender's sending limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import getaddresses
from pathlib import Path

import click

from hrmonitor.cli.options import config_option, json_option, load, print_json
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.core.routing.spam_score import header_fields
from hrmonitor.services.relay.routing import Router


def _addresses(fields: Sequence[tuple[str, str]], names: Sequence[str]) -> list[str]:
    wanted = {n.lower() for n in names}
    values = [v for n, v in fields if n.lower() in wanted]
    return [address for _, address in getaddresses(values) if address]


async def route_message(
    message: bytes,
    *,
    mail_from: str | None,
    rcpts: Sequence[str],
    client: str | None,
    router: Router,
    now: datetime,
) -> RouteDecision:
    fields = header_fields(message)
    if mail_from is None:
        found = _addresses(fields, ["Return-Path"]) or _addresses(fields, ["From"])
        mail_from = found[0] if found else ""
        if any(n.lower() == "return-path" and v.strip() == "<>" for n, v in fields):
            mail_from = ""
    recipients = list(rcpts) or _addresses(fields, ["To", "Cc", "Bcc"])
    return await router.route(
        mail_from=mail_from,
        rcpts=recipients,
        client_ip=client,
        message=router.stored_form(message, client),
        arrival=now,
        now=now,
        count=False,
    )


def route_file(
    path: str | Path,
    mail_from: str | None,
    rcpts: Sequence[str],
    client: str | None,
    router: Router,
    now: datetime | None = None,
) -> RouteDecision:
    """Explain the routing of the message in ``path`` (envelope defaults: module docstring)."""
    message = Path(path).read_bytes()
    when = now or datetime.now(UTC)

    async def explain() -> RouteDecision:
        try:
            return await route_message(
                message, mail_from=mail_from, rcpts=rcpts, client=client, router=router, now=when
            )
        finally:
            await router.close()  # the scanner's connections belong to this event loop

    return asyncio.run(explain())


def _print(decision: RouteDecision) -> None:
    facts = decision.facts
    click.echo(f"pool: {decision.pool} ({decision.risk})")
    if decision.hold:
        click.echo(f"held: sender domain DNS unknown, re-resolving until {decision.hold_until}")
    click.echo(f"sender: <{facts.get('mail_from')}> ({facts.get('sender_domain_status')})")
    click.echo(f"tenant: {facts.get('tenant') or '-'}  client: {facts.get('client_ip')}")
    if not decision.reasons:
        click.echo("reasons: none matched; the normal pool")
    for reason in decision.reasons:
        click.echo(f"  {reason.rule}: {reason.detail}")
    for alert in decision.alerts:
        click.echo(f"alert: {alert}")


@click.command("route")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--mail-from", default=None, help="Envelope sender (default: from the message).")
@click.option("--rcpt", "rcpts", multiple=True, help="Envelope recipient (repeatable).")
@click.option("--client", default="127.0.0.1", show_default=True, help="Connecting client IP.")
@json_option
@config_option
def route_command(
    file: str,
    mail_from: str | None,
    rcpts: tuple[str, ...],
    client: str,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Which pool FILE would leave from, and why. Sends nothing."""
    from hrmonitor.app.build import build_router  # noqa: PLC0415  (light CLI start)

    router = build_router(load(config_path))
    decision = route_file(file, mail_from, rcpts, client, router)
    if as_json:
        print_json(decision.to_json())
    else:
        _print(decision)
