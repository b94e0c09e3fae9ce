"""``hrmonitor route FILE``: which pool a message would leave from, and why. Sends nothing.

The envelope defaults come from the message itself when not given: the
sender from ``Return-Path`` (else ``From``), the recipients from ``To``,
``Cc`` and ``Bcc``; the client defaults to 127.0.0.1 (local submission,
which the default ``trusted_filters`` trusts). Explaining a message never
counts towards its sender's sending limits.

The listener's acceptance rules come first (``app.route``): a client in no
tenant's networks that did not authenticate (``--auth-user`` says it did) is
refused with ``550 5.7.1 relaying denied``, printed as such, exit status 1,
and the message is not routed. Score headers that count for nothing (from a
client that is not a trusted filter, or without a readable score) are listed
with why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
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
    tenant: str | None = None,
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
        tenant=next((t for t in router.tenants if t.name == tenant), None),
        count=False,
    )


def route_file(
    path: str | Path,
    mail_from: str | None,
    rcpts: Sequence[str],
    client: str | None,
    router: Router,
    now: datetime | None = None,
    tenant: str | None = None,
) -> RouteDecision:
    """Explain the routing of the message in ``path`` (envelope defaults: module docstring)."""
    message = Path(path).read_bytes()
    when = now or datetime.now(UTC)

    async def explain() -> RouteDecision:
        try:
            return await route_message(
                message, mail_from=mail_from, rcpts=rcpts, client=client, router=router,
                now=when, tenant=tenant,
            )  # fmt: skip
        finally:
            await router.close()  # the scanner's connections belong to this event loop

    return asyncio.run(explain())


def _print(decision: RouteDecision, accepted_by: str, ignored: Sequence[dict[str, str]]) -> None:
    facts = decision.facts
    click.echo(f"pool: {decision.pool} ({decision.risk})")
    if decision.hold:
        click.echo(f"held: sender domain DNS unknown, re-resolving until {decision.hold_until}")
    click.echo(f"accepted: {accepted_by}")
    click.echo(f"sender: <{facts.get('mail_from')}> ({facts.get('sender_domain_status')})")
    click.echo(f"tenant: {facts.get('tenant') or '-'}  client: {facts.get('client_ip')}")
    if not decision.reasons:
        click.echo("reasons: none matched; the normal pool")
    for reason in decision.reasons:
        click.echo(f"  {reason.rule}: {reason.detail}")
    for alert in decision.alerts:
        click.echo(f"alert: {alert}")
    for header in ignored:
        click.echo(f"ignored header {header['header']}: {header['value']} ({header['why']})")


@click.command("route")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--mail-from", default=None, help="Envelope sender (default: from the message).")
@click.option("--rcpt", "rcpts", multiple=True, help="Envelope recipient (repeatable).")
@click.option("--client", default="127.0.0.1", show_default=True, help="Connecting client IP.")
@click.option(
    "--auth-user",
    default=None,
    help="As if the client authenticated (SMTP AUTH) as this user of [listener] auth_file.",
)
@json_option
@config_option
def route_command(
    file: str,
    mail_from: str | None,
    rcpts: tuple[str, ...],
    client: str,
    auth_user: str | None,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Which pool FILE would leave from, and why; or that the listener would refuse it.

    Sends nothing. Exit 0: accepted and routed; 1: the listener would refuse the
    client (550 5.7.1 relaying denied: in no tenant's networks and not
    authenticated); 2: a bad config or argument.
    """
    from hrmonitor.app.build import build_router  # noqa: PLC0415  (light CLI start)
    from hrmonitor.app.route import ignored_headers, listener_acceptance  # noqa: PLC0415

    config = load(config_path)
    try:
        ipaddress.ip_address(client)
    except ValueError:
        raise click.BadParameter(
            f"{client!r} is not an IP address", param_hint="--client"
        ) from None
    routing = config.routing
    ignored = ignored_headers(
        Path(file).read_bytes(),
        client,
        tuple(routing.spam_headers),
        tuple(str(n) for n in routing.trusted_filters),
    )
    acceptance = listener_acceptance(config, client, auth_user)
    if acceptance.refused:
        if as_json:
            print_json(
                {
                    "pool": None,
                    "refused": {"reply": acceptance.reply, "why": acceptance.why},
                    "reasons": [],
                    "facts": {"client_ip": client, "auth_user": auth_user, "tenant": None},
                    "headers_ignored": ignored,
                }
            )
        else:
            click.echo(f"refused: {acceptance.reply} ({acceptance.why})")
            click.echo("the listener would not accept this message: it is not routed")
        sys.exit(1)
    router = build_router(config)
    decision = route_file(file, mail_from, rcpts, client, router, tenant=acceptance.tenant)
    if as_json:
        data = decision.to_json()
        facts = dict(data.get("facts") or {})  # type: ignore[call-overload]
        # The listener strips an untrusted client's score headers before the router sees
        # them: name them here, as the router cannot.
        facts["spam_headers_ignored"] = [h["header"] for h in ignored]
        facts["auth_user"] = auth_user
        data.update(facts=facts, refused=None, accepted=acceptance.why, headers_ignored=ignored)
        print_json(data)
    else:
        _print(decision, acceptance.why, ignored)
