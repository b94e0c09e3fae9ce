"""The durable queue on SQLite and PostgreSQL: enqueue, claim, record, recover."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from hrmonitor.adapters.store.engine import create_store_engine, relaxed_engine
from hrmonitor.adapters.store.migrate import upgrade
from hrmonitor.adapters.store.queue import postgresql
from hrmonitor.adapters.store.queue.admin import QueueAction, QueueAdmin, QueuedMessage, QueueFilter
from hrmonitor.adapters.store.queue.bodies import CHUNK_BYTES
from hrmonitor.adapters.store.queue.model import DueRecipient
from hrmonitor.adapters.store.queue.repository import (
    BounceKind,
    NewMessage,
    Outcome,
    QueueRepository,
    RecipientStatus,
)
from hrmonitor.errors import StoreError
from tests.fixtures.peers import IN_CI

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
T = TypeVar("T")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_engine() -> Iterator[Engine]:
    schema = f"queue_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the server is a real peer; say so when it is missing
        admin.dispose()
        message = f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # The daemon's way (create_store_engine), so relaxed transactions use the relaxed sibling.
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    engine = create_store_engine(url.render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def queue(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[QueueRepository]:
    if request.param == "sqlite":
        engine = create_store_engine(f"sqlite:///{tmp_path}/queue.db")
        upgrade(engine)
        yield QueueRepository(engine)
        engine.dispose()
    else:
        for engine in _pg_engine():
            upgrade(engine)
            yield QueueRepository(engine)


def _message(
    mid: str = "m1", rcpts: tuple[str, ...] = ("b@rcpt.test",), **kw: object
) -> NewMessage:
    values: dict[str, object] = {
        "id": mid,
        "tenant": "contoso",
        "client_ip": "127.0.0.5",
        "mail_from": "a@contoso.test",
        "recipients": rcpts,
        "body": b"Subject: x\r\n\r\nbody\r\n",
        "arrived_at": T0,
        "pool": "normal",
        "risk": "normal",
        "reasons": ({"rule": "default", "detail": "clean"},),
        "message_id": "<m1@contoso.test>",
    }
    values.update(kw)
    return NewMessage(**values)  # type: ignore[arg-type]


def test_enqueued_message_keeps_envelope_body_and_routing_reasons(queue: QueueRepository) -> None:
    queue.enqueue([_message(rcpts=("b@rcpt.test", "c@Other.TEST"))])
    record = queue.message("m1")
    assert record is not None
    assert (record.mail_from, record.pool, record.risk) == ("a@contoso.test", "normal", "normal")
    assert record.reasons == ({"rule": "default", "detail": "clean"},)
    assert [(r.address, r.domain, r.status) for r in record.recipients] == [
        ("b@rcpt.test", "rcpt.test", RecipientStatus.QUEUED),
        ("c@Other.TEST", "other.test", RecipientStatus.QUEUED),
    ]
    assert queue.body("m1") == b"Subject: x\r\n\r\nbody\r\n"
    assert record.arrived_at == T0


def test_claim_takes_only_due_recipients_and_only_once(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1"), _message("m2", hold_until=T0 + timedelta(minutes=10))])
    claimed = queue.claim_due(T0, limit=10)
    assert [c.message_id for c in claimed] == ["m1"]
    assert queue.claim_due(T0, limit=10) == []
    assert [c.message_id for c in queue.claim_due(T0 + timedelta(minutes=10), limit=10)] == ["m2"]


def _defer(queue: QueueRepository, due: Sequence[DueRecipient], until: datetime) -> None:
    deferred = RecipientStatus.DEFERRED
    queue.record(
        [Outcome(d.recipient_id, d.message_id, deferred, T0, "normal", until) for d in due]
    )


def test_claims_take_the_oldest_due_first_across_queued_and_deferred(
    queue: QueueRepository,
) -> None:
    """Queued and deferred recipients are claimed in one order: earliest due, then id."""
    queue.enqueue([_message(f"d{i}", arrived_at=T0) for i in range(3)])
    _defer(queue, queue.claim_due(T0, limit=3), T0 + timedelta(minutes=1))  # d0-d2 deferred
    queue.enqueue([_message("q0", arrived_at=T0 + timedelta(seconds=30))])
    queue.enqueue([_message("q1", arrived_at=T0 + timedelta(minutes=2))])
    at = T0 + timedelta(minutes=5)
    assert [d.message_id for d in queue.claim_due(at, limit=2)] == ["q0", "d0"]
    assert [d.message_id for d in queue.claim_due(at, limit=10)] == ["d1", "d2", "q1"]


def _backlog(queue: QueueRepository, waiting: int, delivered: int) -> None:
    """``waiting`` due messages (inline bodies) after ``delivered`` concluded ones."""
    body = b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n"
    done = [_message(f"d{n}", body=body) for n in range(delivered)]
    queue.enqueue(done)
    queue.record(
        [
            Outcome(due.recipient_id, due.message_id, RecipientStatus.DELIVERED, T0, "normal")
            for due in queue.claim_due(T0, limit=delivered)
        ]
    )
    later = T0 + timedelta(seconds=1)
    queue.enqueue([_message(f"w{n}", body=body, arrived_at=later) for n in range(waiting)])


def _sqlite_steps(queue: QueueRepository, work: Callable[[], T]) -> tuple[int, T]:
    """SQLite virtual-machine steps (in blocks of 100) that ``work`` costs, and its result."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.set_progress_handler(count, 100)

    engine = queue._engine
    engine.pool.dispose()  # every connection from here on counts
    event.listen(engine, "connect", on_connect)
    try:
        result = work()
    finally:
        event.remove(engine, "connect", on_connect)
        engine.pool.dispose()
    return steps, result


def _claim_cost_sqlite(queue: QueueRepository) -> int:
    """SQLite virtual-machine steps (in blocks of 100) of one claim of 10 recipients."""
    steps, claimed = _sqlite_steps(
        queue, lambda: queue.claim_due(T0 + timedelta(minutes=1), limit=10)
    )
    assert len(claimed) == 10
    return steps


def test_a_claims_cost_does_not_grow_with_the_backlog_or_the_history(tmp_path: Path) -> None:
    """Issue 10: a claim of 10 recipients read every due recipient (joined with its
    message and inline body, then sorted) before taking the first 10, so each claim
    cost the whole backlog: 79 % of the store thread under benchmarks/relay.py. It now
    walks the partial index of waiting recipients and stops at its LIMIT."""
    costs = []
    for waiting, delivered in ((20, 0), (2000, 2000)):
        engine = create_store_engine(f"sqlite:///{tmp_path}/queue-{waiting}.db")
        upgrade(engine)
        queue = QueueRepository(engine)
        _backlog(queue, waiting, delivered)
        costs.append(_claim_cost_sqlite(queue))
        engine.dispose()
    small, large = costs
    assert large <= small * 2, f"claim cost {small} steps at 20 waiting, {large} at 2,000"


def test_a_purge_reads_the_old_messages_not_the_whole_history(tmp_path: Path) -> None:
    """Issue 10, item 4: housekeeping purges finished messages older than a week every
    few minutes; without an index on arrival each purge read every message of that
    week's history on the store thread. Behind 20 or 4,000 finished messages, none old
    enough, a purge now costs the same."""
    costs = []
    for delivered in (20, 4000):
        engine = create_store_engine(f"sqlite:///{tmp_path}/purge-{delivered}.db")
        upgrade(engine)
        queue = QueueRepository(engine)
        _backlog(queue, waiting=0, delivered=delivered)
        steps, purged = _sqlite_steps(queue, partial(queue.purge_finished, T0))
        assert purged == 0
        costs.append(steps)
        # and an old enough purge still takes them all
        assert queue.purge_finished(T0 + timedelta(days=1)) == delivered
        engine.dispose()
    small, large = costs
    assert large <= small * 2 + 2, f"purge cost {small} steps at 20 messages, {large} at 4,000"


@pytest.mark.postgres
def test_postgres_claims_from_the_waiting_index_without_a_sort(postgres_url: str) -> None:
    """The same claim on PostgreSQL: its plan reads the partial index in claim order
    (no Sort node over the due rows), as the planner sees a real backlog. The claim's
    one statement sorts only what it claimed (at most ``limit`` rows) to return them in
    order: the part that picks them (the CTE ``picked``) has no sort."""
    engine = create_store_engine(postgres_url)
    upgrade(engine)
    queue = QueueRepository(engine)
    _backlog(queue, 2000, 500)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        params = {"now": T0 + timedelta(minutes=1), "limit": 10, "inline": 65536, "node": None}
        (plan,) = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + postgresql._CLAIM, params
        ).scalar_one()
    engine.dispose()
    picked = _plan_nodes(plan["Plan"], lambda node: node.get("Subplan Name") == "CTE picked")
    assert len(picked) == 1, plan
    below = _plan_nodes(picked[0], lambda _node: True)
    assert [n for n in below if n.get("Index Name") == "ix_queue_recipients_waiting"], plan
    assert not [n for n in below if n["Node Type"] == "Sort"], plan


def _plan_nodes(node: dict[str, Any], wanted: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """The nodes of an EXPLAIN (FORMAT JSON) plan, ``node`` and all below it, that ``wanted``."""
    found = [node] if wanted(node) else []
    for child in node.get("Plans", []):
        found += _plan_nodes(child, wanted)
    return found


@pytest.mark.postgres
def test_postgres_relaxed_transactions_send_no_extra_statement(
    postgres_url: str, tmp_path: Path
) -> None:
    """Claims and attempt records run on sessions with synchronous_commit off (issue 11).

    Each relaxed transaction used to send ``SET LOCAL synchronous_commit = off`` as its
    own round trip; the relaxed sibling's sessions have it from the connection options.
    What the connections send is read off libpq's protocol trace (the hot statements
    bypass SQLAlchemy's execution events: ``queue.postgresql``).
    """
    engine = create_store_engine(postgres_url)
    relaxed = relaxed_engine(engine)
    assert relaxed is not None
    trace = tmp_path / "libpq.trace"
    with trace.open("w") as sink:
        for watched in (engine, relaxed):
            event.listen(
                watched, "connect", lambda dbapi, _record: dbapi.pgconn.trace(sink.fileno())
            )
        upgrade(engine)
        queue = QueueRepository(engine)
        queue.enqueue([_message()])
        (due,) = queue.claim_due(T0, limit=10)
        queue.record(
            [Outcome(due.recipient_id, "m1", RecipientStatus.DELIVERED, T0, "normal", code=250)]
        )
        # Everything both ends sent since each connection opened (statements keep
        # their newlines, so the text is searched whole).
        sent = trace.read_text()
        assert "INSERT INTO queue_attempts" in sent, sent
        assert "claimed_by" in sent, sent
        assert "synchronous_commit" not in sent.lower()
        with relaxed.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
            # the URL's own options (the test schema's search_path) are kept
            options = engine.url.query["options"]
            assert isinstance(options, str)
            assert conn.exec_driver_sql("SHOW search_path").scalar() == options.removeprefix(
                "-csearch_path="
            )
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        assert relaxed.pool.checkedin() == 1  # type: ignore[attr-defined]
        engine.dispose()  # closes every traced connection before the trace file
        assert relaxed.pool.checkedin() == 0  # type: ignore[attr-defined]


def test_recorded_outcomes_update_recipients_and_keep_every_attempt(queue: QueueRepository) -> None:
    queue.enqueue([_message()])
    (due,) = queue.claim_due(T0, limit=10)
    retry_at = T0 + timedelta(minutes=1)
    queue.record(
        [
            Outcome(
                due.recipient_id,
                "m1",
                RecipientStatus.DEFERRED,
                T0,
                "normal",
                next_attempt_at=retry_at,
                source_ip="127.0.0.10",
                destination="127.0.0.50",
                code=451,
                reply="451 4.7.1 later",
                duration_ms=3.5,
            )
        ]
    )
    assert queue.claim_due(T0, limit=10) == []
    assert queue.next_due_at() == retry_at
    (again,) = queue.claim_due(retry_at, limit=10)
    assert again.attempts == 1
    queue.record(
        [
            Outcome(
                again.recipient_id,
                "m1",
                RecipientStatus.DELIVERED,
                retry_at,
                "normal",
                source_ip="127.0.0.11",
                destination="127.0.0.50",
                code=250,
                reply="250 ok",
            )
        ]
    )
    record = queue.message("m1")
    assert record is not None
    (rcpt,) = record.recipients
    assert (rcpt.status, rcpt.attempts, rcpt.last_code) == (RecipientStatus.DELIVERED, 2, 250)
    attempts = queue.attempts("m1")
    assert [(a.source_ip, a.code) for a in attempts] == [("127.0.0.10", 451), ("127.0.0.11", 250)]
    assert queue.next_due_at() is None


def test_one_write_with_two_outcomes_of_a_recipient_applies_both_in_order(
    queue: QueueRepository,
) -> None:
    """PostgreSQL updates a batch's recipients in one ``UPDATE ... FROM unnest``, which
    would apply only one of two rows for the same recipient: such a batch goes in rounds.
    Both attempts count and the later outcome is the recipient's state, as row by row."""
    queue.enqueue([_message(), _message("m2", message_id="<m2@contoso.test>")])
    first, second = sorted(queue.claim_due(T0, limit=10), key=lambda d: d.message_id)
    retry_at = T0 + timedelta(minutes=5)
    queue.write(
        [
            Outcome(
                first.recipient_id,
                "m1",
                RecipientStatus.DEFERRED,
                T0,
                "normal",
                next_attempt_at=retry_at,
                code=451,
                reply="451 later",
            ),
            Outcome(second.recipient_id, "m2", RecipientStatus.DELIVERED, T0, "normal", code=250),
            Outcome(
                first.recipient_id,
                "m1",
                RecipientStatus.DELIVERED,
                T0 + timedelta(seconds=1),
                "normal",
                code=250,
                reply="250 ok",
            ),
            BounceKind("m1", "hard"),
            BounceKind("m1", "soft"),
        ]
    )
    record = queue.message("m1")
    assert record is not None
    (rcpt,) = record.recipients
    assert (rcpt.status, rcpt.attempts, rcpt.last_code, rcpt.last_reply) == (
        RecipientStatus.DELIVERED,
        2,
        250,
        "250 ok",
    )
    assert rcpt.next_attempt_at == retry_at  # the delivery kept the deferral's next time
    assert record.bounce_kind == "soft"  # the later of the two kinds
    assert [a.code for a in queue.attempts("m1")] == [451, 250]
    other = queue.message("m2")
    assert other is not None
    assert [(r.status, r.attempts) for r in other.recipients] == [(RecipientStatus.DELIVERED, 1)]


def test_a_naive_timestamp_is_refused_as_a_store_error(queue: QueueRepository) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        queue.enqueue([_message(arrived_at=datetime(2026, 11, 28, 12, 0))])
    assert queue.message("m1") is None


@given(st.lists(st.integers(min_value=0, max_value=4), max_size=30))
def test_rounds_hold_each_key_once_and_keep_each_keys_order(keys: list[int]) -> None:
    items = list(enumerate(keys))  # (position, key)
    rounds = list(postgresql._once_each(items, key=lambda item: item[1]))
    assert sorted(item for r in rounds for item in r) == items  # every item, once
    for r in rounds:
        assert len({key for _, key in r}) == len(r)
    for key in set(keys):  # a key's items come in the order they were given
        order = [pos for r in rounds for pos, k in r if k == key]
        assert order == sorted(order)


def test_recover_makes_recipients_left_delivering_due_again(queue: QueueRepository) -> None:
    queue.enqueue([_message()])
    assert len(queue.claim_due(T0, limit=10)) == 1
    later = T0 + timedelta(hours=1)
    assert queue.recover(later) == 1
    assert [c.message_id for c in queue.claim_due(later, limit=10)] == ["m1"]


def test_own_deferrals_do_not_count_as_attempts(queue: QueueRepository) -> None:
    queue.enqueue([_message()])
    (due,) = queue.claim_due(T0, limit=10)
    queue.record(
        [
            Outcome(
                due.recipient_id,
                "m1",
                RecipientStatus.DEFERRED,
                T0,
                "normal",
                next_attempt_at=T0,
                reply="pool exhausted",
                own=True,
                counts_as_attempt=False,
            )
        ]
    )
    (again,) = queue.claim_due(T0, limit=10)
    assert again.attempts == 0
    assert queue.attempts("m1")[0].own is True


def test_purge_removes_only_finished_messages(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1"), _message("m2")])
    first, _second = queue.claim_due(T0, limit=10)
    queue.record(
        [Outcome(first.recipient_id, first.message_id, RecipientStatus.DELIVERED, T0, "normal")]
    )
    assert queue.purge_finished(T0 + timedelta(days=1)) == 1
    assert queue.message_ids() == ["m2"]
    assert queue.counts() == {"normal": {"delivering": 1}}


def test_a_batch_enqueues_atomically(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1")])
    with pytest.raises(StoreError):
        queue.enqueue([_message("m2"), _message("m1")])  # m1 collides: nothing of the batch stays
    assert queue.message_ids() == ["m1"]


def test_recover_with_a_cutoff_requeues_only_old_claims(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1")])
    assert len(queue.claim_due(T0, limit=10)) == 1
    assert queue.recover(T0 + timedelta(minutes=5), claimed_before=T0) == 0  # still fresh
    assert queue.recover(T0 + timedelta(minutes=30), claimed_before=T0 + timedelta(minutes=20)) == 1


def test_recipients_sent_since_are_what_the_senders_sent_for_the_limit_windows(
    queue: QueueRepository,
) -> None:
    """What a restarted daemon counts again for the sending limits: each tenant
    message's sender, arrival and recipients, not the null sender's or the relay's DSNs."""
    queue.enqueue(
        [
            _message("old", arrived_at=T0 - timedelta(days=1, minutes=1)),
            _message("m1", rcpts=("b@rcpt.test", "c@rcpt.test", "d@x.test")),
            _message("m2", mail_from="Other@Contoso.test", arrived_at=T0 + timedelta(minutes=5)),
            _message("bounce", mail_from="", arrived_at=T0 + timedelta(minutes=6)),
            _message("dsn", mail_from="", dsn_of="m1", arrived_at=T0 + timedelta(minutes=7)),
        ]
    )
    done = queue.claim_due(T0 + timedelta(hours=1), limit=1)[0]  # delivered mail still counts
    queue.record([Outcome(done.recipient_id, done.message_id, RecipientStatus.DELIVERED, T0,
                          "normal", code=250, reply="250 ok")])  # fmt: skip
    assert queue.recipients_sent_since(T0 - timedelta(days=1)) == [
        ("a@contoso.test", T0, 3),
        ("Other@Contoso.test", T0 + timedelta(minutes=5), 1),
    ]
    assert queue.recipients_sent_since(T0 + timedelta(minutes=1)) == [
        ("Other@Contoso.test", T0 + timedelta(minutes=5), 1)
    ]


def test_large_bodies_are_stored_and_read_byte_for_byte_beside_small_ones(
    queue: QueueRepository,
) -> None:
    # Over LARGE_BODY_BYTES: SQLite blob I/O, PostgreSQL COPY and substring slices.
    large = b"Subject: big\r\n\r\n" + bytes(range(256)) * 2000 + b"\r\n"
    queue.enqueue([_message("s1"), _message("b1", body=large), _message("s2")])
    assert queue.body("b1") == large
    assert queue.body("s1") == queue.body("s2") == b"Subject: x\r\n\r\nbody\r\n"
    claimed = {r.message_id: r.body for r in queue.claim_due(T0, limit=10)}
    assert claimed["s1"] == b"Subject: x\r\n\r\nbody\r\n"
    assert claimed["b1"] is None  # read when it is sent
    queue.write([BounceKind("b1", "none")])
    assert queue.body("b1") == large


# Around the slice and the large-body threshold (both 64 KiB), several slices, 10 MB.
BODY_SIZES = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 7, 10_000_000]


def _body(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("size", BODY_SIZES)
def test_a_body_of_any_size_comes_back_byte_for_byte(queue: QueueRepository, size: int) -> None:
    body = _body(size, size)
    queue.enqueue([_message("m1", body=body)])
    assert queue.body("m1") == body
    claimed = queue.claim_due(T0, limit=1)[0]
    assert claimed.body == (body if size <= 64 * 1024 else None)  # bigger: read when sent


def test_a_batch_of_bodies_of_every_size_comes_back_byte_for_byte(
    queue: QueueRepository,
) -> None:
    # One transaction: on PostgreSQL the large ones share one COPY, between bound ones.
    bodies = {f"m{i}": _body(size, i) for i, size in enumerate(BODY_SIZES + BODY_SIZES[::-1])}
    queue.enqueue([_message(mid, body=body) for mid, body in bodies.items()])
    for mid, body in bodies.items():
        assert queue.body(mid) == body, (mid, len(body))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=4 * CHUNK_BYTES + 3), min_size=1, max_size=4),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_bodies_of_arbitrary_sizes_round_trip(
    queue: QueueRepository, sizes: list[int], seed: int
) -> None:
    batch = uuid.uuid4().hex[:8]  # the queue outlives the examples
    bodies = {f"{batch}-{i}": _body(size, seed + i) for i, size in enumerate(sizes)}
    queue.enqueue([_message(mid, body=body) for mid, body in bodies.items()])
    for mid, body in bodies.items():
        assert queue.body(mid) == body


def test_bouncing_a_large_message_reads_it_and_stores_a_large_dsn_in_one_transaction(
    queue: QueueRepository,
) -> None:
    # The operator's bounce reads the body (slices on PostgreSQL) and inserts the DSN
    # (a COPY) on the same connection, in the same transaction.
    original = _body(3 * CHUNK_BYTES + 7, 1)
    queue.enqueue([_message("m1", body=original)])
    seen: list[bytes] = []

    def make_dsn(message: QueuedMessage, body: bytes, rcpts: Sequence[str]) -> NewMessage:
        seen.append(body)
        return _message("dsn1", rcpts=("a@contoso.test",), body=b"DSN\r\n\r\n" + body)

    results = QueueAdmin(queue._engine).act(
        QueueAction.BOUNCE, QueueFilter(ids=("m1",)), now=T0, actor="test", reason="test",
        make_dsn=make_dsn,
    )  # fmt: skip
    assert [r.dsn for r in results] == ["dsn1"]
    assert seen == [original]
    assert queue.body("dsn1") == b"DSN\r\n\r\n" + original


@pytest.mark.parametrize("size", [CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 7, 1_000_000])
def test_a_large_body_read_in_slices_of_any_size_is_the_body(
    queue: QueueRepository, size: int
) -> None:
    # The runner sends a body too large for its claim a slice at a time (blob I/O on
    # SQLite, substring on PostgreSQL), never the whole of it at once.
    body = _body(size, size)
    queue.enqueue([_message("m1", body=body)])
    for step in (CHUNK_BYTES, 1000, 333_333):
        slices = [
            queue.body_slice("m1", offset, min(step, size - offset))
            for offset in range(0, size, step)
        ]
        assert b"".join(slices) == body, step


def test_a_slice_is_never_handed_out_short_nor_from_a_body_gone(queue: QueueRepository) -> None:
    body = _body(3 * CHUNK_BYTES, 3)
    queue.enqueue([_message("m1", body=body)])
    assert queue.body_slice("m1", len(body) - 10, 10) == body[-10:]
    # Past the end: DATA would be cut short, so it is an error, not fewer bytes.
    with pytest.raises(StoreError, match="expected"):
        queue.body_slice("m1", len(body) - 10, 11)
    with queue._engine.begin() as conn:
        conn.execute(text("DELETE FROM queue_messages"))
    with pytest.raises(StoreError, match="not in the queue"):
        queue.body_slice("m1", 0, 10)


def test_the_claim_says_whether_a_body_has_8bit_bytes(queue: QueueRepository) -> None:
    # MAIL FROM declares BODY=8BITMIME before DATA, and a large body is not read first.
    queue.enqueue(
        [
            _message("ascii", body=b"Subject: x\r\n\r\n" + b"a" * 100_000 + b"\r\n"),
            _message("latin", body=b"Subject: x\r\n\r\n" + b"a" * 100_000 + b"\xe9\r\n"),
            _message("small", body=b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n"),
        ]
    )
    claimed = {r.message_id: r.eight_bit for r in queue.claim_due(T0, limit=10)}
    assert claimed == {"ascii": False, "latin": True, "small": True}


def test_a_body_purged_away_is_not_found(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1", body=_body(3 * CHUNK_BYTES))])
    with queue._engine.begin() as conn:
        conn.execute(text("DELETE FROM queue_messages"))
    with pytest.raises(StoreError, match="not in the queue"):
        queue.body("m1")


def test_purge_takes_the_bodies_with_the_messages(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1", body=b"x" * 100_000), _message("m2")])
    queue.record(
        [
            Outcome(r.recipient_id, r.message_id, RecipientStatus.DELIVERED, T0, "normal")
            for r in queue.claim_due(T0, limit=10)
        ]
    )
    assert queue.purge_finished(T0 + timedelta(days=1)) == 2
    with queue._engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM queue_bodies")).scalar_one() == 0


def _commits(engine: Engine) -> dict[str, list[int]]:
    """Transactions counted per engine: the durable one and (PostgreSQL) its relaxed
    sibling. SQLite's are SQLAlchemy's commits; PostgreSQL's hot writes are one
    statement each in autocommit mode (``queue.postgresql``), so there they are the
    connections the write checked out of each engine's pool."""
    counted: dict[str, list[int]] = {"durable": [], "relaxed": []}
    kind = "checkout" if engine.dialect.name == "postgresql" else "commit"
    event.listen(engine, kind, lambda *_args: counted["durable"].append(1))
    relaxed = relaxed_engine(engine)
    if relaxed is not None:
        event.listen(relaxed, kind, lambda *_args: counted["relaxed"].append(1))
    return counted


def _transaction_ids(engine: Engine, rows: str) -> set[str]:
    """PostgreSQL: the transactions that last wrote ``rows`` (``xmin``), from a query
    of ``(table, condition)`` pairs written as ``table WHERE condition; ...``."""
    union = " UNION ".join(
        f"SELECT xmin::text FROM {table}" for table in (r.strip() for r in rows.split(";"))
    )
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(text(union))}


def test_messages_kinds_and_outcomes_are_written_in_one_transaction(
    queue: QueueRepository,
) -> None:
    """The relay's group commit hands ``write`` all three at once (issue 11): one commit."""
    queue.enqueue([_message("m1", rcpts=("b@rcpt.test", "c@rcpt.test"))])
    first, second = queue.claim_due(T0, limit=10)
    commits = _commits(queue._engine)
    queue.write(
        [
            _message("m2"),
            BounceKind("m1", "none"),
            Outcome(first.recipient_id, "m1", RecipientStatus.DELIVERED, T0, "normal", code=250),
            _message("m3"),
            Outcome(
                second.recipient_id,
                "m1",
                RecipientStatus.BOUNCED,
                T0,
                "normal",
                code=550,
                reply="550 5.1.1 no such user",
            ),
        ]
    )
    assert len(commits["durable"]) + len(commits["relaxed"]) == 1
    # It held messages, whose 250s wait for it: the durable engine's commit.
    assert commits["durable"] == [1]
    if queue._engine.dialect.name == "postgresql":  # every row it wrote, one transaction
        written = _transaction_ids(
            queue._engine,
            "queue_messages WHERE id IN ('m1', 'm2', 'm3');"
            " queue_bodies WHERE message_id IN ('m2', 'm3');"
            " queue_recipients WHERE message_id IN ('m1', 'm2', 'm3');"
            " queue_attempts",
        )
        assert len(written) == 1, written
        # m1's body came with the enqueue before: another transaction, told apart
        assert _transaction_ids(queue._engine, "queue_bodies WHERE message_id = 'm1'") not in (
            written,
            set(),
        )
    assert sorted(queue.message_ids()) == ["m1", "m2", "m3"]
    m1 = queue.message("m1")
    assert m1 is not None
    assert m1.bounce_kind == "none"
    assert {r.address: r.status for r in m1.recipients} == {
        "b@rcpt.test": RecipientStatus.DELIVERED,
        "c@rcpt.test": RecipientStatus.BOUNCED,
    }
    assert [a.code for a in queue.attempts("m1")] == [250, 550]


def test_a_write_without_messages_is_relaxed(postgres_url: str) -> None:
    """Only messages need a durable commit; kinds and outcomes alone go relaxed, as before."""
    engine = create_store_engine(postgres_url)
    upgrade(engine)
    queue = QueueRepository(engine)
    queue.enqueue([_message("m1")])
    (due,) = queue.claim_due(T0, limit=10)
    commits = _commits(engine)
    queue.write(
        [
            BounceKind("m1", "dsn"),
            Outcome(due.recipient_id, "m1", RecipientStatus.DELIVERED, T0, "normal", code=250),
        ]
    )
    assert commits == {"durable": [], "relaxed": [1]}
    engine.dispose()


def test_a_failed_write_leaves_nothing_of_it(queue: QueueRepository) -> None:
    queue.enqueue([_message("m1")])
    (due,) = queue.claim_due(T0, limit=10)
    with pytest.raises(StoreError, match=r"2 message\(s\) \(m2, m1\), 1 attempt\(s\)"):
        queue.write(
            [
                _message("m2"),
                _message("m1"),  # collides: the transaction rolls back whole
                Outcome(due.recipient_id, "m1", RecipientStatus.DELIVERED, T0, "normal", code=250),
            ]
        )
    assert queue.message_ids() == ["m1"]
    assert queue.attempts("m1") == []
