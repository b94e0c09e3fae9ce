"""Several nodes on one store: node rows with heartbeats, role leases, claim owners.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(100)


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", NAME, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        _when("started_at"),
        _when("heartbeat_at"),
        _when("stopped_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_nodes"),
    )
    op.create_table(
        "node_roles",
        sa.Column("role", NAME, nullable=False),
        sa.Column("holder", NAME, nullable=True),
        _when("since", nullable=True),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("role", name="pk_node_roles"),
    )
    with op.batch_alter_table("queue_recipients") as batch:
        batch.add_column(sa.Column("claimed_by", NAME, nullable=True))
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("node", NAME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("node")
    with op.batch_alter_table("queue_recipients") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("node_roles")
    op.drop_table("nodes")
