"""Sending limits across nodes: per-node counts per sender and minute, messages' node.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(100)


def upgrade() -> None:
    op.create_table(
        "sender_counts",
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node", NAME, nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "minute", "node", name="pk_sender_counts"),
    )
    op.create_index("ix_sender_counts_updated_at", "sender_counts", ["updated_at"])
    with op.batch_alter_table("queue_messages") as batch:
        batch.add_column(sa.Column("accepted_by", NAME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queue_messages") as batch:
        batch.drop_column("accepted_by")
    op.drop_table("sender_counts")
