"""Composition for ``hrmonitor queue``: the queue tools on the configured store, and the
router that decides where a bounce's DSN leaves from (as the daemon's relay would)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from hrmonitor.adapters.store.queue.admin import QueueAdmin
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.app.build import build_router
from hrmonitor.app.monitoring import open_configured_store
from hrmonitor.config.loading import Config
from hrmonitor.core.model import RiskClass
from hrmonitor.errors import OperatorError
from hrmonitor.services.queue_admin import DsnRoute, QueueTools


def open_queue_tools(config: Config) -> tuple[QueueTools, Callable[[], None]]:
    """The queue tools for one command, and how to close what they opened."""
    store = open_configured_store(config)

    async def route_dsn(tenant: str, data: bytes, recipient: str, now: datetime) -> DsnRoute:
        router = build_router(config)
        try:
            owner = next((t for t in router.tenants if t.name == tenant), None)
            decision = await router.route(
                mail_from="", rcpts=[recipient], client_ip="127.0.0.1", message=data,
                arrival=now, now=now, tenant=owner, count=False,
            )  # fmt: skip
        finally:
            await router.close()
        # Fail closed: a DSN never borrows a normal IP, whatever the local rules say.
        if decision.risk is not RiskClass.HIGH:
            raise OperatorError(
                f"the routing rules send a DSN to pool {decision.pool} ({decision.risk}), "
                "not a high-risk pool: is the shipped null-sender rule switched off?"
            )
        reasons = tuple({"rule": r.rule, "detail": r.detail} for r in decision.reasons)
        return DsnRoute(decision.pool, str(decision.risk), reasons)

    engine = store.engine
    tools = QueueTools(
        QueueAdmin(engine), QueueRepository(engine), config.listener.hostname, route_dsn
    )
    return tools, store.close
