"""devices: device registry

Revision ID: devices_0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "devices_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("devices",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("serial_number", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("manufacturer", sa.String(100), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_device_token_hash"),
        sa.UniqueConstraint(
            "organisation_id", "serial_number", name="uq_device_organisation_id_serial_number"
        ),
    )
    op.create_index(
        "ix_device_organisation_id_created_at", "device", ["organisation_id", "created_at"]
    )
    op.create_index("ix_device_last_seen_at", "device", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("device")
