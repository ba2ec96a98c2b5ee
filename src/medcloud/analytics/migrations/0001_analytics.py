"""analytics: alerts

Revision ID: analytics_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "analytics_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("analytics",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("measurement", sa.String(40), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("rule", sa.String(60), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("reading_timestamp", UTCDateTime(), nullable=False),
        sa.Column("raised_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "device_id",
            "measurement",
            "reading_timestamp",
            "rule",
            name="uq_alert_device_id_measurement_reading_timestamp_rule",
        ),
    )
    op.create_index("ix_alert_organisation_id_raised_at", "alert", ["organisation_id", "raised_at"])


def downgrade() -> None:
    op.drop_table("alert")
