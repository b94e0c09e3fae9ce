"""Applies the migrations shipped in ``migrations/`` with Alembic, without an alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).with_name("migrations")

# Any constant will do: it only has to be the same for every hrmonitor node.
_PG_LOCK_KEY = 0x68726D6F  # "hrmo"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


def upgrade(engine: Engine) -> bool:
    """Bring the database to every head; True if a migration ran, False if it was current.

    Cheap when already current: one query for the version table, no migration scripts run.
    On PostgreSQL an advisory lock keeps two nodes starting together from both migrating.
    """
    heads = head_revisions()
    with engine.connect() as connection:
        if current_revisions(connection) == heads:
            return False
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        if current_revisions(connection) == heads:
            return False
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")
    return True
