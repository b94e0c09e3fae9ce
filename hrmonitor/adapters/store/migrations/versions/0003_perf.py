"""Per-node IP volume: sent/delivered counts and warm-up reservations off the ``ips`` row.

Every delivery used to update its IP's ``ips`` row (twice, each a durable
transaction); with several nodes that row was where they queued. Counts now go
to one row per (ip, day, node), written in batches. The day's counts already
stored in ``ips`` move to a row of node ``""``; the old columns stay (unused)
so that this migration never rewrites the ``ips`` table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ip_volume",
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("sent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("delivered", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("ip", "day", "node", name="pk_ip_volume"),
        sa.ForeignKeyConstraint(["ip"], ["ips.ip"], name="fk_ip_volume_ip_ips"),
    )
    op.execute(
        "INSERT INTO ip_volume (ip, day, node, sent, delivered, reserved, last_sent_at) "
        "SELECT ip, sent_day, '', sent_today, delivered_today, 0, last_sent_at "
        "FROM ips WHERE sent_day IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("ip_volume")
