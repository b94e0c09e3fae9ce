"""Classification gets the part of a message it reads, so the message is freed with the 250.

Acceptance classifies after the message is stored and answered; it used to hand
the whole message to the classification task, which held it while the runner
read the stored copy to deliver it: two copies of a large message at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hrmonitor.adapters.store.engine import create_store_engine
from hrmonitor.adapters.store.migrate import upgrade
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.core.bounce.classify import MAX_BYTES
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.model import RiskClass
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.services.relay.acceptance import Acceptance
from hrmonitor.services.relay.group_commit import queue_writes
from hrmonitor.services.relay.settings import RelaySettings

T = TypeVar("T")
T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


async def test_classification_is_handed_the_first_max_bytes_not_the_message(
    tmp_path: Path,
) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path}/queue.db")
    upgrade(engine)
    queue = QueueRepository(engine)
    handed: list[bytes] = []

    async def store(fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def route(submission: Submission, *, now: datetime, again: bool) -> RouteDecision:
        return RouteDecision("normal", RiskClass.NORMAL, (), {})

    async def on_accepted(submission: Submission, decision: RouteDecision) -> str | None:
        handed.append(submission.data)
        return None

    acceptance = Acceptance(
        queue=queue,
        store=store,
        route=route,
        settings=RelaySettings(hostname="relay.test", pool_ips={}),
        write=queue_writes(queue, store, 500).submit,
        wake=lambda: None,
        on_accepted=on_accepted,
    )
    message = b"Subject: big\r\n\r\n" + b"x" * (4 * MAX_BYTES) + b"\r\n"
    submission = Submission(
        tenant="contoso",
        client_ip="127.0.0.5",
        helo="client.test",
        mail_from="a@contoso.test",
        recipients=("b@rcpt.test",),
        data=message,
        received_at=T0,
    )
    stored = await acceptance.queue_submission(submission)
    await asyncio.wait_for(acceptance.settle(), 10)
    assert queue.body(stored.id) == message  # stored whole
    assert handed == [message[:MAX_BYTES]]  # classified from its first MAX_BYTES
    engine.dispose()
