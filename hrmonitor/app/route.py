"""``hrmonitor route``'s composition: the listener's acceptance rules, then the router.

The listener relays only for a client in a tenant's networks or a user that
authenticated (SMTP AUTH, one of a tenant's ``users`` in ``[listener]
auth_file``); anyone else gets ``550 5.7.1 relaying denied`` at RCPT and the
message is never routed. ``route`` asks the same question first, with the
listener's own test of the networks, and reports a refusal as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hrmonitor.adapters.smtp_in import tenant_for
from hrmonitor.app.smtp_parts import listener_tenants
from hrmonitor.config.loading import Config
from hrmonitor.core.credentials import parse_auth_file
from hrmonitor.core.delivery.envelope import RELAY_DENIED
from hrmonitor.core.routing.spam_score import client_is_trusted, header_fields, parse_score
from hrmonitor.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Acceptance:
    """Whether the listener would relay for the client: the tenant and why, or the refusal."""

    tenant: str | None
    why: str
    reply: str = ""  # the SMTP reply of a refusal

    @property
    def refused(self) -> bool:
        return self.tenant is None


def listener_acceptance(config: Config, client_ip: str, auth_user: str | None) -> Acceptance:
    """The listener's answer to ``client_ip`` (and ``auth_user``, as if it had authenticated)."""
    if auth_user is not None:
        return _auth_acceptance(config, auth_user)
    tenant = tenant_for(listener_tenants(config), client_ip)
    if tenant is None:
        return Acceptance(
            None,
            f"client {client_ip} is in no tenant's networks and did not authenticate",
            RELAY_DENIED.reply,
        )
    return Acceptance(tenant, f"client {client_ip} is in tenant {tenant}'s networks")


def _auth_acceptance(config: Config, user: str) -> Acceptance:
    listener = config.listener
    if not listener.auth_file or not listener.tls_cert:
        return Acceptance(
            None,
            "the listener offers no SMTP AUTH ([listener] auth_file and tls_cert are needed)",
            RELAY_DENIED.reply,
        )
    path = config.path(listener.auth_file)
    try:
        users = parse_auth_file(path.read_text(encoding="utf-8"), str(path))
    except OSError as error:
        raise ConfigError(str(config.source), "listener.auth_file", f"{path}: {error}") from None
    tenant = next((t.name for t in config.tenants if user in t.users), None)
    if user not in users or tenant is None:
        where = "in no tenant's users" if tenant is None else f"not in {path}"
        return Acceptance(
            None, f"AUTH user {user} is {where}: the login fails", "535 5.7.8 Authentication failed"
        )
    return Acceptance(tenant, f"AUTH user {user} relays for tenant {tenant}")


def ignored_headers(
    message: bytes, client_ip: str, spam_headers: Sequence[str], trusted_filters: Sequence[str]
) -> list[dict[str, str]]:
    """The score headers of ``message`` that count for nothing, each with why."""
    wanted = {h.lower() for h in spam_headers}
    trusted = client_is_trusted(client_ip, trusted_filters)
    ignored = []
    for name, value in header_fields(message):
        if name.lower() not in wanted:
            continue
        if not trusted:
            why = (
                f"client {client_ip} is not in [routing] trusted_filters: "
                "the listener strips the header before routing"
            )
        elif parse_score(name, value) is None:
            why = "no score could be read from it"
        else:
            continue
        ignored.append({"header": name, "value": value, "why": why})
    return ignored
