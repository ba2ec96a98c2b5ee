"""reports: the reports made and the daily run's watermark

Revision ID: reports_0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "reports_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("reports",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("scope", sa.String(12), nullable=False),
        sa.Column("ward_id", sa.String(36), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("trigger", sa.String(12), nullable=False),
        sa.Column("generated_at", UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(36), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("daily_key", sa.String(200), nullable=True),
        sa.UniqueConstraint("daily_key", name="uq_report_daily_key"),
    )
    op.create_index(
        "ix_report_organisation_generated", "report", ["organisation_id", "generated_at"]
    )
    op.create_table(
        "report_watermark",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("report_watermark")
    op.drop_index("ix_report_organisation_generated", table_name="report")
    op.drop_table("report")
