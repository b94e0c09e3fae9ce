"""Bounce kinds found after the 250 are written in batches, like the acceptances.

Classification ends after the message is stored and answered. Each kind used to
be its own transaction: a durable commit per accepted message on the store's one
thread, the largest single cost of that thread under load (issue 10).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, select

from hrmonitor.adapters.store.engine import create_store_engine
from hrmonitor.adapters.store.migrate import upgrade
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.adapters.store.queue.schema import MESSAGES
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.model import RiskClass
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.services.relay.acceptance import Acceptance
from hrmonitor.services.relay.settings import RelaySettings

T = TypeVar("T")
T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
MESSAGES_SENT = 20


async def test_the_kinds_of_concurrent_messages_share_a_transaction(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path}/queue.db")
    upgrade(engine)
    queue = QueueRepository(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))

    async def store(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)  # as the daemon's store thread does

    async def route(submission: Submission, *, now: datetime, again: bool) -> RouteDecision:
        return RouteDecision("normal", RiskClass.NORMAL, (), {})

    async def on_accepted(submission: Submission, decision: RouteDecision) -> str | None:
        return "none" if b"plain" in submission.data else "dsn"

    async def record(outcomes: object) -> None:
        return None

    acceptance = Acceptance(
        queue=queue,
        store=store,
        route=route,
        settings=RelaySettings(hostname="relay.test", pool_ips={}),
        record=record,
        wake=lambda: None,
        on_accepted=on_accepted,
    )

    def submission(n: int) -> Submission:
        body = b"plain" if n % 2 else b"report"
        return Submission(
            tenant="contoso",
            client_ip="127.0.0.5",
            helo="client.test",
            mail_from="a@contoso.test",
            recipients=(f"b{n}@rcpt.test",),
            data=b"Subject: m\r\n\r\n" + body + b"\r\n",
            received_at=T0,
        )

    stored = await asyncio.gather(
        *(acceptance.queue_submission(submission(n)) for n in range(MESSAGES_SENT))
    )
    await asyncio.wait_for(acceptance.settle(), 10)

    with engine.connect() as conn:
        rows = conn.execute(select(MESSAGES.c.id, MESSAGES.c.bounce_kind)).all()
    kinds = {key: kind for key, kind in rows}
    assert kinds == {m.id: "none" if b"plain" in m.body else "dsn" for m in stored}
    # One commit for the acceptances and one for the kinds when nothing splits them;
    # one per message (21) before.
    assert len(commits) <= 4, len(commits)
    engine.dispose()
