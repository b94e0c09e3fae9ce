"""The initial store: pools, IPs and their pool history, DNSBL answers and listings,
zone health, audit events, suspensions, alerts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

IP = sa.String(45)
NAME = sa.String(100)
STATE = sa.String(32)


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("name", NAME, nullable=False),
        sa.Column("risk", STATE, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pools"),
    )
    op.create_table(
        "ips",
        sa.Column("ip", IP, nullable=False),
        sa.Column("pool", NAME, nullable=False),
        sa.Column("state", STATE, nullable=False),
        _when("state_since"),
        _when("state_until", nullable=True),
        sa.Column("state_actor", NAME, server_default=sa.text("''"), nullable=False),
        sa.Column("warmup_stage", sa.Integer(), nullable=True),
        _when("warmup_since", nullable=True),
        sa.Column("sent_today", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("delivered_today", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sent_day", sa.Date(), nullable=True),
        _when("last_sent_at", nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("ip", name="pk_ips"),
        sa.ForeignKeyConstraint(["pool"], ["pools.name"], name="fk_ips_pool_pools"),
    )
    op.create_table(
        "ip_pool_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ip", IP, nullable=False),
        sa.Column("pool", NAME, nullable=False),
        sa.Column("risk", STATE, nullable=False),
        _when("first_seen"),
        sa.PrimaryKeyConstraint("id", name="pk_ip_pool_history"),
        sa.UniqueConstraint("ip", "pool", "risk", name="uq_ip_pool_history_ip"),
    )
    op.create_index("ix_ip_pool_history_ip", "ip_pool_history", ["ip"])
    op.create_table(
        "zone_health",
        sa.Column("list_key", NAME, nullable=False),
        sa.Column("health", STATE, nullable=False),
        sa.Column("detail", sa.Text(), server_default=sa.text("''"), nullable=False),
        _when("checked_at"),
        _when("changed_at"),
        sa.PrimaryKeyConstraint("list_key", name="pk_zone_health"),
    )
    op.create_table(
        "answers",
        sa.Column("ip", IP, nullable=False),
        sa.Column("list_key", NAME, nullable=False),
        sa.Column("status", STATE, nullable=False),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("severity", STATE, nullable=True),
        sa.Column("txt", sa.Text(), server_default=sa.text("''"), nullable=False),
        _when("checked_at"),
        _when("clean_since", nullable=True),
        sa.PrimaryKeyConstraint("ip", "list_key", name="pk_answers"),
    )
    op.create_table(
        "listings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ip", IP, nullable=False),
        sa.Column("list_key", NAME, nullable=False),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("severity", STATE, nullable=False),
        sa.Column("txt", sa.Text(), server_default=sa.text("''"), nullable=False),
        _when("first_seen"),
        _when("last_seen"),
        _when("cleared_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_listings"),
    )
    op.create_index(
        "uq_listings_open",
        "listings",
        ["ip", "list_key"],
        unique=True,
        sqlite_where=sa.text("cleared_at IS NULL"),
        postgresql_where=sa.text("cleared_at IS NULL"),
    )
    op.create_index("ix_listings_ip_first_seen", "listings", ["ip", "first_seen"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        _when("at"),
        sa.Column("ip", IP, nullable=False),
        sa.Column("pool", NAME, nullable=False),
        sa.Column("kind", STATE, nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        _when("until", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_ip_at", "audit_events", ["ip", "at"])
    op.create_table(
        "suspensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ip", IP, nullable=False),
        sa.Column("scope", NAME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", NAME, nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        _when("since"),
        _when("until"),
        _when("lifted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_suspensions"),
    )
    op.create_index(
        "uq_suspensions_open",
        "suspensions",
        ["ip", "scope"],
        unique=True,
        sqlite_where=sa.text("lifted_at IS NULL"),
        postgresql_where=sa.text("lifted_at IS NULL"),
    )
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("kind", NAME, nullable=False),
        sa.Column("severity", STATE, nullable=False),
        _when("first_at"),
        _when("last_sent_at"),
        _when("resolved_at", nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_alerts"),
    )


def downgrade() -> None:
    for table in (
        "alerts",
        "suspensions",
        "audit_events",
        "listings",
        "answers",
        "zone_health",
        "ip_pool_history",
        "ips",
        "pools",
    ):
        op.drop_table(table)
