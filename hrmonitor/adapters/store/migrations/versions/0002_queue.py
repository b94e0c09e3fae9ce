"""The mail queue: messages with their routing decision, recipients, delivery attempts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

IP = sa.String(45)
NAME = sa.String(100)
STATE = sa.String(32)


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", NAME, nullable=False),
        sa.Column("client_ip", IP, nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _when("arrived_at"),
        sa.Column("pool", NAME, nullable=False),
        sa.Column("risk", STATE, nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("bounce_kind", STATE, nullable=True),
        _when("hold_until", nullable=True),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("smtputf8", sa.Integer(), nullable=False),
        sa.Column("dsn_of", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_queue_messages"),
    )
    op.create_table(
        "queue_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("status", STATE, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at"),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("remote_mta", sa.Text(), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_queue_recipients"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["queue_messages.id"],
            name="fk_queue_recipients_message_id_queue_messages",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_queue_recipients_due", "queue_recipients", ["status", "next_attempt_at"]
    )
    op.create_index("ix_queue_recipients_message_id", "queue_recipients", ["message_id"])
    op.create_table(
        "queue_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("pool", NAME, nullable=False),
        sa.Column("source_ip", IP, nullable=True),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        _when("at"),
        sa.Column("own", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_attempts"),
    )
    op.create_index("ix_queue_attempts_message_id", "queue_attempts", ["message_id"])


def downgrade() -> None:
    op.drop_table("queue_attempts")
    op.drop_table("queue_recipients")
    op.drop_table("queue_messages")
