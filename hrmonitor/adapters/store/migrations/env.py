"""Alembic environment: always driven programmatically by ``hrmonitor.adapters.store.migrate``.

The caller hands over an open connection in ``config.attributes["connection"]``;
there is no alembic.ini and no URL here, so the version table lands wherever the
connection's default schema (PostgreSQL ``search_path``) points.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hrmonitor.adapters.store.schema import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("hrmonitor migrations run only through Store.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
