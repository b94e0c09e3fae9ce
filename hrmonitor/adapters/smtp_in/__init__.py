"""The SMTP listener (aiosmtpd): takes mail from tenants, refuses everyone else.

- ``listener``: :class:`Listener` and its :class:`ListenerSettings`, tenants by network.
- ``session``: one SMTP session's checks (line ends, addresses, DATA, limits).
- ``connections``: the connection limits, in all and per client address.
"""

from hrmonitor.adapters.smtp_in.listener import (
    AcceptFn,
    AuthenticateFn,
    Listener,
    ListenerSettings,
    Tenant,
    tenant_for,
)
from hrmonitor.adapters.smtp_in.session import TOO_BIG

__all__ = [
    "TOO_BIG",
    "AcceptFn",
    "AuthenticateFn",
    "Listener",
    "ListenerSettings",
    "Tenant",
    "tenant_for",
]
