"""The composition root: the only place that wires adapters and services together.

``build`` turns a Config into each part, ``oneshot`` runs the CLI's one-shot
commands, ``daemon`` owns the long-lived process and its lifecycle.
"""

from hrmonitor.app.build import (
    alert_channels,
    build_router,
    dnsbl_engine,
    mail_dns,
    open_configured_store,
    open_controller,
    schedule_warnings,
    zone_lists,
)
from hrmonitor.app.daemon import Daemon
from hrmonitor.app.oneshot import (
    CheckOutcome,
    check_outcome,
    history_data,
    report_data,
    run_check,
    upgrade_database,
)

__all__ = [
    "CheckOutcome",
    "Daemon",
    "alert_channels",
    "build_router",
    "check_outcome",
    "dnsbl_engine",
    "history_data",
    "mail_dns",
    "open_configured_store",
    "open_controller",
    "report_data",
    "run_check",
    "schedule_warnings",
    "upgrade_database",
    "zone_lists",
]
