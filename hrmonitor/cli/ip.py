"""``hrmonitor ip retire|restore|disable|enable IP --reason TEXT [--until WHEN] [--force]``.

Operator actions, audited with the actor ``operator:<$USER>``. The rotation
core decides whether the action is possible (``core.rotation``); the
controller applies it through the store's compare-and-set, so a running
daemon and this command never apply one change twice. An unknown IP, a
missing reason or an impossible transition exits 2 with a message and
changes nothing. A running daemon picks the change up at its next tick.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import click

from hrmonitor.adapters.clock import SystemClock
from hrmonitor.cli.options import config_option, load, operator_actor
from hrmonitor.core.model import Clock, canonical_ip
from hrmonitor.core.rotation.decide import OperatorAction, Verb
from hrmonitor.core.units import parse_duration
from hrmonitor.errors import OperatorError
from hrmonitor.services.rotation.controller import Controller, OperatorResult


def parse_until(text: str | None, now: datetime) -> datetime | None:
    """``--until``: an ISO 8601 time (UTC if no zone is given) or a duration from now."""
    if text is None:
        return None
    try:
        return now + parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise OperatorError(
            f"--until {text!r} is neither a time (2026-12-01T08:00Z) nor a duration (2h, 3d)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def apply_operator_action(
    controller: Controller,
    ip: str,
    verb: Verb,
    reason: str,
    *,
    actor: str,
    now: datetime,
    until: datetime | None = None,
    force: bool = False,
) -> OperatorResult:
    """Apply one operator action; OperatorError (exit 2) when it is refused.

    The command bodies call this with a controller on the configured store;
    tests call it directly.
    """
    if not reason.strip():
        raise OperatorError("--reason is required and must not be empty")
    try:
        canonical = canonical_ip(ip)
    except ValueError:
        raise OperatorError(f"{ip!r} is not an IP address") from None
    action = OperatorAction(canonical, verb, reason.strip(), actor, now, until, force)
    result = await controller.operator(action)
    if result.refused is not None:
        raise OperatorError(f"{verb} {canonical}: {result.refused}")
    return result


def _run(
    verb: Verb,
    ip: str,
    reason: str,
    until: str | None,
    force: bool,
    config_path: str | None,
    clock: Clock | None = None,
) -> None:
    config = load(config_path)
    now = (clock or SystemClock()).now()
    from hrmonitor.app.build import open_controller  # noqa: PLC0415  (light CLI start)

    controller, close = open_controller(config)
    try:

        async def go() -> OperatorResult:
            await controller.load(now)
            return await apply_operator_action(
                controller,
                ip,
                verb,
                reason,
                actor=operator_actor(),
                now=now,
                until=parse_until(until, now),
                force=force,
            )

        result = asyncio.run(go())
    finally:
        close()
    for t in result.transitions:
        line = f"{t.ip} ({t.pool}): {t.from_state} -> {t.to_state}: {t.reason}"
        if t.until is not None:
            line += f" (until {t.until.isoformat()})"
        click.echo(line)


@click.group("ip")
def ip_group() -> None:
    """Operator actions on one IP: retire, restore, disable, enable (audited)."""


def _verb_command(verb: Verb, help_text: str) -> click.Command:
    @click.argument("ip")
    @click.option("--reason", required=True, help="Why (stored in the audit trail).")
    @click.option("--until", "until", default=None, help="Until when: '2h' or an ISO 8601 time.")
    @click.option("--force", is_flag=True, help="Allow taking out a pool's last eligible IP.")
    @config_option
    def command(ip: str, reason: str, until: str | None, force: bool, config_path: Any) -> None:
        _run(verb, ip, reason, until, force, config_path)

    command.__doc__ = help_text
    return ip_group.command(str(verb))(command)


retire_command = _verb_command(Verb.RETIRE, "Take IP out of rotation (retired).")
restore_command = _verb_command(Verb.RESTORE, "Bring a retired IP back as standby.")
disable_command = _verb_command(Verb.DISABLE, "Take IP out of service (disabled).")
enable_command = _verb_command(Verb.ENABLE, "Return a disabled IP to its configured role.")
