"""A partial index of the waiting recipients, in the order the runner claims them (issue 10).

The claim (``ORDER BY next_attempt_at, id LIMIT n`` over queued and deferred
recipients) had only ``(status, next_attempt_at)``: two index ranges, so SQLite
joined every due recipient with its message and body into a sort before taking
the first n, and each claim cost the whole backlog. This index holds only the
waiting recipients, sorted as claimed: a claim reads n entries, and the runner's
next-due time is its first. Delivered history never enters it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

# The same text as ``queue.schema.waiting_predicate`` at this revision (a migration does
# not import the code it migrates for: the code moves on, the migration must not). On
# SQLite ``+status``: see that function for why.
_WAITING = "status IN ('queued', 'deferred')"


def upgrade() -> None:
    op.create_index(
        "ix_queue_recipients_waiting",
        "queue_recipients",
        ["next_attempt_at", "id"],
        sqlite_where=sa.text(f"+{_WAITING}"),
        postgresql_where=sa.text(_WAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_queue_recipients_waiting", table_name="queue_recipients")
