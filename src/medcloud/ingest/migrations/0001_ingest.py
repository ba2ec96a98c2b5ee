"""ingest: readings

Revision ID: ingest_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "ingest_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("ingest",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reading",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "device_id", "type", "timestamp", name="uq_reading_device_id_type_timestamp"
        ),
    )
    op.create_index("ix_reading_device_id_timestamp", "reading", ["device_id", "timestamp"])


def downgrade() -> None:
    op.drop_table("reading")
