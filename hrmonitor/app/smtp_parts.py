"""The SMTP parts as the config sets them: what the daemon and its worker processes build.

Kept apart from ``app.compose`` so that a listener or delivery process
(``app.listener_worker``, ``app.delivery_worker``) imports only these, the
config and the two SMTP adapters: not the store, the services or the DNSBL
engine, which it never uses (each worker's memory and start-up time).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from hrmonitor.adapters.smtp_in import ListenerSettings
from hrmonitor.adapters.smtp_in import Tenant as ListenerTenant
from hrmonitor.adapters.smtp_out import Connections, OutboundSettings
from hrmonitor.config.loading import Config
from hrmonitor.config.sections import split_address
from hrmonitor.core.credentials import parse_auth_file, verify_password
from hrmonitor.errors import ConfigError


def listener_tenants(config: Config) -> tuple[ListenerTenant, ...]:
    """The listener's acceptance: each tenant's networks (also ``route``'s and a reload's)."""
    return tuple(
        ListenerTenant(t.name, tuple(ipaddress.ip_network(n, strict=False) for n in t.networks))
        for t in config.tenants
    )


def listener_settings(config: Config) -> ListenerSettings:
    """The SMTP listener as ``[listener]`` and the tenants configure it."""
    listener = config.listener
    host, port = split_address(listener.bind)
    return ListenerSettings(
        host=host,
        port=port,
        hostname=listener.hostname,
        tenants=listener_tenants(config),
        max_message_size=listener.max_message_size,
        max_recipients=listener.max_recipients,
        max_line_length=listener.max_line_length,
        timeout=listener.idle_timeout.total_seconds(),
        max_connections=listener.max_connections,
        max_connections_per_client=listener.max_connections_per_client,
        address_literals=listener.address_literals,
        literal_families=frozenset(
            ipaddress.ip_address(ip).version for pool in config.core_pools() for ip in pool.all_ips
        ),
        tls_cert=str(config.path(listener.tls_cert)) if listener.tls_cert else "",
        tls_key=str(config.path(listener.tls_key)) if listener.tls_key else "",
    )


def outbound_connections(config: Config) -> Connections:
    """Outbound SMTP as ``[delivery]`` configures it (port, timeouts, HELO name)."""
    delivery = config.delivery
    return Connections(
        OutboundSettings(
            port=delivery.port,
            helo_name=config.listener.hostname,
            connect_timeout=delivery.connect_timeout.total_seconds(),
            command_timeout=delivery.command_timeout.total_seconds(),
        )
    )


def authenticator(config: Config) -> Callable[[str, str], str | None] | None:
    """SMTP AUTH: (user, password) -> the tenant that user relays for, or None.

    Only users named in a tenant's ``users`` and present in ``[listener]
    auth_file`` can log in; None (no AUTH at all) without an auth file.
    """
    listener = config.listener
    if not listener.auth_file:
        return None
    path = config.path(listener.auth_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(config.source), "listener.auth_file", f"{path}: {error}") from None
    hashes = parse_auth_file(text, str(path))
    tenant_of = {user: tenant.name for tenant in config.tenants for user in tenant.users}

    def authenticate(user: str, password: str) -> str | None:
        tenant = tenant_of.get(user)
        encoded = hashes.get(user)
        if tenant is None or encoded is None or not verify_password(password, encoded):
            return None
        return tenant

    return authenticate
