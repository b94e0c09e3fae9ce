"""Nodes on one store: names held for life, claims owned by a node, roles on leases.

Both backends where the behaviour is the same; PostgreSQL alone where it is
about several daemons (SQLite refuses a second one). A node's death is made by
moving its heartbeat back in the table, not by waiting out a lease.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from hrmonitor.adapters.store import Store, open_store
from hrmonitor.adapters.store.nodes import (
    NODES,
    ROLE_ROWS,
    SWEEPER,
    NodeNameInUse,
    NodeRegistry,
    members,
    roles,
)
from hrmonitor.adapters.store.queue.repository import NewMessage, QueueRepository
from hrmonitor.core.model import AuditEvent

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def _message(mid: str, rcpts: int = 1) -> NewMessage:
    return NewMessage(
        id=mid,
        tenant="contoso",
        client_ip="127.0.0.5",
        mail_from="a@contoso.test",
        recipients=tuple(f"r{i}@rcpt.test" for i in range(rcpts)),
        body=b"Subject: x\r\n\r\nhi\r\n",
        arrived_at=T0,
        pool="normal",
        risk="normal",
        reasons=(),
        bounce_kind=None,
        hold_until=None,
        message_id=f"<{mid}@contoso.test>",
    )


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    """Several nodes need PostgreSQL: SQLite refuses a second one."""
    opened = open_store(postgres_url)
    try:
        opened.upgrade()
        yield opened
    finally:
        opened.close()


@pytest.fixture
def registries() -> Iterator[list[NodeRegistry]]:
    made: list[NodeRegistry] = []
    yield made
    for registry in made:
        registry._release_name()


def _node(store: Store, made: list[NodeRegistry], name: str) -> NodeRegistry:
    registry = NodeRegistry(store.engine, name, LEASE)
    registry.join("host", 1)
    made.append(registry)
    return registry


def _silence(store: Store, name: str) -> None:
    """The node stopped beating a lease and more ago (as if killed)."""
    with store.engine.begin() as conn:
        conn.execute(
            update(NODES)
            .where(NODES.c.name == name)
            .values(heartbeat_at=datetime.now(UTC) - LEASE - timedelta(seconds=5))
        )


@pytest.mark.postgres
def test_a_name_is_held_by_one_daemon_at_a_time_on_postgres(
    pg_store: Store, registries: list[NodeRegistry]
) -> None:
    first = _node(pg_store, registries, "a")
    with pytest.raises(NodeNameInUse, match="'a' is in use"):
        NodeRegistry(pg_store.engine, "a", LEASE).join("host", 2)
    _node(pg_store, registries, "b")  # another name is fine
    first.leave()  # the name is free again once its holder is gone
    _node(pg_store, registries, "a")


def test_sqlite_refuses_a_second_daemon_on_the_same_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hrmonitor.db'}")
    try:
        store.upgrade()
        first = NodeRegistry(store.engine, "a", LEASE)
        first.join("host", 1)
        with pytest.raises(NodeNameInUse, match="SQLite is single-node"):
            NodeRegistry(store.engine, "b", LEASE).join("host", 2)
        first.leave()
        again = NodeRegistry(store.engine, "b", LEASE)
        again.join("host", 3)
        again.leave()
    finally:
        store.close()


def test_a_starting_node_releases_only_its_own_claims(store: Store) -> None:
    """The restart bug: a node's start made every node's claims due again."""
    mine = QueueRepository(store.engine, node="a")
    theirs = QueueRepository(store.engine, node="b")
    mine.enqueue([_message("m1"), _message("m2")])
    assert len(mine.claim_due(T0, limit=1)) == 1
    assert len(theirs.claim_due(T0, limit=1)) == 1
    assert mine.recover(T0 + timedelta(minutes=1)) == 1  # a's, not b's
    due = theirs.claim_due(T0 + timedelta(minutes=1), limit=10)
    assert [d.message_id for d in due] == ["m1"]  # a's again; b's m2 still b's


@pytest.mark.postgres
def test_claims_of_a_node_silent_past_its_lease_are_taken_over(
    pg_store: Store, registries: list[NodeRegistry]
) -> None:
    store = pg_store
    _node(store, registries, "a")
    b = _node(store, registries, "b")
    queue_a = QueueRepository(store.engine, node="a")
    queue_a.enqueue([_message("m1", rcpts=3)])
    assert len(queue_a.claim_due(T0, limit=10)) == 3
    assert b.take_over_claims(T0) == 0  # a is alive: its claims are its own
    _silence(store, "a")
    assert b.take_over_claims(T0) == 3
    assert b.take_over_claims(T0) == 0  # once
    queue_b = QueueRepository(store.engine, node="b")
    assert len(queue_b.claim_due(T0, limit=10)) == 3


@pytest.mark.postgres
def test_a_node_that_signed_off_is_dead_at_once(
    pg_store: Store, registries: list[NodeRegistry]
) -> None:
    store = pg_store
    a = _node(store, registries, "a")
    b = _node(store, registries, "b")
    assert b.hold(SWEEPER)
    b.leave()
    assert a.hold(SWEEPER)  # released, not waiting for the lease
    alive = {m.name: m.alive for m in members(store.engine, LEASE)}
    assert alive == {"a": True, "b": False}


@pytest.mark.postgres
def test_a_role_has_one_holder_and_moves_when_its_lease_runs_out(
    pg_store: Store, registries: list[NodeRegistry]
) -> None:
    store = pg_store
    a = _node(store, registries, "a")
    b = _node(store, registries, "b")
    assert a.hold(SWEEPER)
    assert not b.hold(SWEEPER)
    assert a.hold(SWEEPER)  # renewed
    [record] = [r for r in roles(store.engine) if r.role == SWEEPER]
    assert record.holder == "a"
    with store.engine.begin() as conn:
        conn.execute(update(ROLE_ROWS).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert b.hold(SWEEPER)
    assert not a.hold(SWEEPER)
    [record] = [r for r in roles(store.engine) if r.role == SWEEPER]
    assert record.holder == "b"


def test_audit_events_name_the_node_that_acted(store: Store) -> None:
    store.node = "node-7"
    event = AuditEvent(T0, "127.0.0.20", "high-risk", "state", "active", "retired", "x", "t")
    store.record_event(event)
    store.node = None
    store.record_event(event)
    with store.engine.connect() as conn:
        nodes = conn.execute(text("SELECT node FROM audit_events ORDER BY id")).scalars().all()
    assert nodes == ["node-7", None]
