"""Bounce kinds found after the 250 are written in batches, with the acceptances.

Classification ends after the message is stored and answered. Each kind used to
be its own transaction: a durable commit per accepted message on the store's one
thread, the largest single cost of that thread under load (issue 10). Then they
had a group commit of their own; now messages, kinds and outcomes share the
relay's one group commit (issue 11: with two nodes each node's batches are half
as large, and the transactions per message had doubled).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, select

from hrmonitor.adapters.store.engine import create_store_engine
from hrmonitor.adapters.store.migrate import upgrade
from hrmonitor.adapters.store.queue.repository import (
    BounceKind,
    NewMessage,
    Outcome,
    QueueRepository,
    RecipientStatus,
)
from hrmonitor.adapters.store.queue.schema import MESSAGES
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.model import RiskClass
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.services.relay.acceptance import Acceptance
from hrmonitor.services.relay.group_commit import queue_writes
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

    acceptance = Acceptance(
        queue=queue,
        store=store,
        route=route,
        settings=RelaySettings(hostname="relay.test", pool_ips={}),
        write=queue_writes(queue, store, 500).submit,
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
    # one per message (21) before the kinds were batched.
    assert len(commits) <= 3, len(commits)
    engine.dispose()


async def test_outcomes_and_new_messages_share_a_transaction(tmp_path: Path) -> None:
    """What a delivery concludes rides in the acceptances' transaction, not one of its own."""
    engine = create_store_engine(f"sqlite:///{tmp_path}/queue.db")
    upgrade(engine)
    queue = QueueRepository(engine)

    async def store(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    writes = queue_writes(queue, store, 500)
    first = NewMessage(
        id="first", tenant="contoso", client_ip="127.0.0.5", mail_from="a@contoso.test",
        recipients=("b@rcpt.test",), body=b"Subject: m\r\n\r\nx\r\n", arrived_at=T0,
        pool="normal", risk="normal",
    )  # fmt: skip
    await writes.submit([first])
    (due,) = queue.claim_due(T0, limit=10)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    delivered = Outcome(
        due.recipient_id, "first", RecipientStatus.DELIVERED, T0, "normal", code=250
    )
    await asyncio.gather(
        writes.submit([dataclasses.replace(first, id="second")]),
        writes.submit([delivered]),
        writes.submit([BounceKind("first", "none")]),
        writes.submit([dataclasses.replace(first, id="third")]),
    )
    assert commits == [1]
    assert sorted(queue.message_ids()) == ["first", "second", "third"]
    record = queue.message("first")
    assert record is not None
    assert record.bounce_kind == "none"
    assert [r.status for r in record.recipients] == [RecipientStatus.DELIVERED]
    engine.dispose()
