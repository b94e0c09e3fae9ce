"""An index of messages by arrival, for the housekeeping purge (issue 10, item 4).

The runner purges finished messages older than ``keep_finished`` (7 days) every
few minutes. Without an index on ``arrived_at`` each purge read every message row
of that week of history on the store thread, where acceptances wait their turn:
a cost that grows with the history. With it, a purge reads the rows it deletes.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_queue_messages_arrived_at", "queue_messages", ["arrived_at"])


def downgrade() -> None:
    op.drop_index("ix_queue_messages_arrived_at", table_name="queue_messages")
