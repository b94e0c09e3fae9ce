"""Migrations build the schema from nothing, run again as a no-op, and SQLite is durable."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from hrmonitor.adapters.store import Store, migrate, open_store
from hrmonitor.adapters.store.migrate import head_revisions
from hrmonitor.core.model import Severity
from hrmonitor.errors import StoreError

TABLES = {
    "pools",
    "ips",
    "ip_pool_history",
    "zone_health",
    "answers",
    "listings",
    "audit_events",
    "suspensions",
    "alerts",
    "alembic_version",
}


def test_upgrade_builds_every_table_from_an_empty_database(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert not store.is_current()
        assert store.upgrade() is True
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        assert store.is_current()
    finally:
        store.close()


def test_upgrade_again_changes_nothing_and_says_so(store: Store) -> None:
    with store.engine.connect() as connection:
        before = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        assert set(before) == set(head_revisions())
    assert store.upgrade() is False


def test_a_second_store_on_an_upgraded_database_sees_it_current(store_url: str) -> None:
    first = open_store(store_url)
    second = open_store(store_url)
    try:
        first.upgrade()
        assert second.is_current()
        assert second.upgrade() is False
    finally:
        first.close()
        second.close()


def test_postgres_version_table_lives_in_the_test_schema(postgres_url: str) -> None:
    """Isolation: alembic_version must not land in ``public`` where other runs would see it."""
    store = open_store(postgres_url)
    try:
        store.upgrade()
        with store.engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            found = connection.execute(
                text(
                    "SELECT table_schema FROM information_schema.tables"
                    " WHERE table_name = 'alembic_version' AND table_schema = :schema"
                ),
                {"schema": schema},
            ).scalar_one()
        assert schema.startswith("hrm_test_")
        assert found == schema
    finally:
        store.close()


def test_sqlite_runs_in_wal_with_synchronous_full_and_foreign_keys(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    finally:
        store.close()


def test_relative_sqlite_path_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///relative.db")
    try:
        store.upgrade()
    finally:
        store.close()
    assert (tmp_path / "relative.db").exists()


def test_unsupported_database_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="only sqlite and postgresql"):
        open_store("mysql://localhost/hrmonitor")


def test_naive_timestamps_are_refused_not_guessed(store: Store) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        store.resolve_alert("k", datetime(2026, 11, 28, 12, 0))


def test_timestamps_come_back_timezone_aware_utc(store: Store) -> None:
    sent = datetime(2026, 11, 28, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert store.claim_alert("k", "listing", Severity.HIGH, {}, sent, timedelta(hours=1))
    (alert,) = store.recent_alerts()
    assert alert.last_sent_at == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert alert.last_sent_at.tzinfo is UTC


def test_a_database_from_a_newer_hrmonitor_is_a_store_error(store: Store) -> None:
    """A revision this release does not ship (someone ran a newer version) stops the upgrade."""
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="migration failed"):
        store.upgrade()


def test_an_in_memory_database_is_one_database_for_every_thread() -> None:
    """``sqlite://`` must not hand each worker thread (asyncio.to_thread) a database of its own."""
    store = open_store("sqlite://")
    try:
        store.upgrade()
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(store.is_current).result()
    finally:
        store.close()


def test_the_shipped_heads_constant_matches_the_migration_scripts() -> None:
    """The fast "already current" check (no Alembic import) must know the real heads."""
    assert migrate.head_revisions() == migrate.SHIPPED_HEADS


def test_a_current_database_is_recognised_without_importing_alembic(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.upgrade()
    finally:
        store.close()
    code = (
        "import sys\n"
        "from hrmonitor.adapters.store import open_store\n"
        f"store = open_store({store_url!r})\n"
        "assert store.upgrade() is False\n"
        "store.close()\n"
        "assert 'alembic' not in sys.modules, 'alembic was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_0006_moves_queued_bodies_to_their_own_table_and_back(store_url: str) -> None:
    from alembic import command

    from hrmonitor.adapters.store.queue.repository import QueueRepository

    store = open_store(store_url)
    body = b"Subject: queued before 0006\r\n\r\n" + b"x" * 70_000 + b"\r\n"

    def migrate_to(revision: str, *, down: bool = False) -> None:
        with store.engine.begin() as connection:
            config = migrate.alembic_config()
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)

    try:
        migrate_to("0005")
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO queue_messages (id, tenant, client_ip, mail_from, body, size,"
                    " arrived_at, pool, risk, reasons, message_id, smtputf8)"
                    " VALUES ('m1', 't', '127.0.0.5', 'a@contoso.test', :body, :size,"
                    " :at, 'normal', 'normal', '[]', '', 0)"
                ),
                {"body": body, "size": len(body), "at": datetime.now(UTC)},
            )
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO queue_recipients (message_id, address, domain, status,"
                    " attempts, next_attempt_at, last_reply, remote_mta, updated_at)"
                    " VALUES ('m1', 'b@rcpt.test', 'rcpt.test', 'queued', 0, :at, '', '', :at)"
                ),
                {"at": datetime.now(UTC)},
            )
        assert store.upgrade() is True
        queue = QueueRepository(store.engine)
        assert queue.body("m1") == body
        claimed = queue.claim_due(datetime.now(UTC), limit=5)
        assert [r.address for r in claimed] == ["b@rcpt.test"]
        assert claimed[0].eight_bit is None  # queued before 0008: not known
        migrate_to("0005", down=True)
        with store.engine.connect() as connection:
            moved_back = connection.execute(
                text("SELECT body FROM queue_messages WHERE id = 'm1'")
            ).scalar_one()
        assert bytes(moved_back) == body
    finally:
        store.close()
