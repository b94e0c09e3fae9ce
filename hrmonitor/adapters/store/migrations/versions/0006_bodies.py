"""Message bodies in a table of their own, the body its last column (issue 13, item 1).

SQLite builds a whole row in memory to insert it and rewrites the whole row for
an UPDATE of any column: with the body inside ``queue_messages`` a 10 MB message
cost 2x its size to store and 2x again when its bounce kind was recorded. In
``queue_bodies`` nothing but the insert touches it, and with the body last a
zero-filled body is not materialised, so the queue writes (and reads) it with
SQLite's incremental blob I/O.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "queue_bodies",
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["queue_messages.id"], ondelete="CASCADE",
            name="fk_queue_bodies_message_id_queue_messages",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("message_id", name="pk_queue_bodies"),
    )
    op.execute("INSERT INTO queue_bodies (message_id, body) SELECT id, body FROM queue_messages")
    # Not batch mode: on SQLite it re-creates the table, and dropping the old one with
    # foreign keys on deletes every recipient and body through ON DELETE CASCADE.
    # ALTER TABLE ... DROP COLUMN rewrites the rows in place (SQLite 3.35 or later).
    op.execute("ALTER TABLE queue_messages DROP COLUMN body")


def downgrade() -> None:
    op.add_column("queue_messages", sa.Column("body", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE queue_messages SET body = "
        "(SELECT body FROM queue_bodies WHERE queue_bodies.message_id = queue_messages.id)"
    )
    op.drop_table("queue_bodies")
