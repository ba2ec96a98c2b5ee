"""analytics: technical alerts from the devices context in the alert list

Revision ID: analytics_0002
Revises: analytics_0001
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "analytics_0002"
down_revision: str | None = "analytics_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A technical alert has no reading: these columns describe only clinical ones.
_READING_COLUMNS = (
    ("measurement", sa.String(40)),
    ("value", sa.Float()),
    ("threshold", sa.Float()),
    ("reading_timestamp", UTCDateTime()),
)


def upgrade() -> None:
    # A batch: SQLite cannot drop NOT NULL in place, so it rebuilds `alert` (nothing refers to
    # it, so the rebuild cascades nowhere); PostgreSQL gets plain ALTER TABLE statements.
    with op.batch_alter_table("alert") as batch:
        batch.add_column(
            sa.Column("source", sa.String(10), nullable=False, server_default="clinical")
        )
        batch.add_column(sa.Column("message", sa.String(200), nullable=True))
        batch.add_column(sa.Column("resolved_at", UTCDateTime(), nullable=True))
        for name, type_ in _READING_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=True)


def downgrade() -> None:
    # Technical alerts cannot live in the old shape; the devices context still holds them.
    op.execute("DELETE FROM alert WHERE source = 'technical'")
    with op.batch_alter_table("alert") as batch:
        for name, type_ in _READING_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=False)
        batch.drop_column("resolved_at")
        batch.drop_column("message")
        batch.drop_column("source")
