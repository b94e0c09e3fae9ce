"""Applies the migrations shipped in ``migrations/`` with Alembic, without an alembic.ini.

A database already at the shipped heads is recognised with one query and no
Alembic import at all: ``hrmonitor check`` is a probe started every few
minutes, and importing Alembic costs it more than the check of its version.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hrmonitor.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")

# The heads of migrations/versions; a test keeps this equal to what Alembic reads there.
SHIPPED_HEADS = frozenset({"0009"})

# Any constant will do: it only has to be the same for every hrmonitor node.
_PG_LOCK_KEY = 0x68726D6F  # "hrmo"


def alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415  (see the module docstring)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(connection: Connection) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    return frozenset(MigrationContext.configure(connection).get_current_heads())


def stored_revisions(engine: Engine) -> frozenset[str] | None:
    """The revisions in alembic's version table, or None where there is none yet."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(str(row[0]) for row in rows)
    except SQLAlchemyError:
        return None


def upgrade(engine: Engine) -> bool:
    """Bring the database to every head; True if a migration ran, False if it was current.

    Cheap when already current: one query for the version table, no migration scripts run.
    On PostgreSQL an advisory lock keeps two nodes starting together from both migrating.
    """
    if stored_revisions(engine) == SHIPPED_HEADS:
        return False
    from alembic.util import CommandError  # noqa: PLC0415

    try:
        return _migrate(engine)
    except CommandError as exc:
        raise StoreError(f"database migration failed: {exc}") from exc


def _migrate(engine: Engine) -> bool:
    from alembic import command  # noqa: PLC0415

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
