"""ingest: minute and hour rollups of readings, for charts of long ranges

Revision ID: ingest_0003
Revises: ingest_0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "ingest_0003"
down_revision: str | None = "ingest_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WIDTHS = {60: "minute", 3600: "hour"}
# SQLite keeps datetimes as text in SQLAlchemy's form, which every bucket must share to compare.
_SQLITE_BUCKET = {60: "%Y-%m-%d %H:%M:00.000000", 3600: "%Y-%m-%d %H:00:00.000000"}


def upgrade() -> None:
    op.create_table(
        "reading_rollup",
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "device_id", "width", "bucket_start", "type", "patient_key", name="pk_reading_rollup"
        ),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for width, unit in _WIDTHS.items():
        bucket = (
            f"date_trunc('{unit}', \"timestamp\", 'UTC')"
            if postgres
            else f"strftime('{_SQLITE_BUCKET[width]}', \"timestamp\")"
        )
        # The readings stored so far, rolled up as the writer rolls up new ones.
        op.execute(
            "INSERT INTO reading_rollup "  # noqa: S608  (constant expressions only)
            "(device_id, width, bucket_start, type, patient_key, low, high, total, count) "
            f"SELECT device_id, {width}, {bucket}, type, coalesce(patient_id, ''), "
            "min(value), max(value), sum(value), count(*) FROM reading "
            f"GROUP BY device_id, {bucket}, type, coalesce(patient_id, '')"
        )


def downgrade() -> None:
    op.drop_table("reading_rollup")
