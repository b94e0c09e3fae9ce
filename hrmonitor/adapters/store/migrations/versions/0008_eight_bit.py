"""Whether a message's body has bytes above 127, recorded at acceptance (issue 13, item 1).

MAIL FROM declares ``BODY=8BITMIME`` before DATA; the queue runner sends a large
body a slice at a time as DATA goes out, so it must know this without reading
the body first. NULL for a message queued before this revision: the runner then
reads the body through once to find out.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A nullable column without a default: no row is rewritten (SQLite, PostgreSQL).
    op.add_column("queue_messages", sa.Column("eight_bit", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Not batch mode (see 0006: re-creating the table cascades to every recipient).
    op.execute("ALTER TABLE queue_messages DROP COLUMN eight_bit")
