"""devices: models, assignments, status, technical alerts, firmware images and rollouts

Revision ID: devices_0003
Revises: devices_0002
Create Date: 2026-12-14
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "devices_0003"
down_revision: str | None = "devices_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000

device = sa.table(
    "device",
    sa.column("id", sa.String(36)),
    sa.column("patient_id", sa.String(64)),
    sa.column("created_at", UTCDateTime()),
    sa.column("last_seen_at", UTCDateTime()),
    sa.column("status", sa.String(20)),
)
assignment = sa.table(
    "device_assignment",
    sa.column("id", sa.String(36)),
    sa.column("device_id", sa.String(36)),
    sa.column("patient_id", sa.String(64)),
    sa.column("started_at", UTCDateTime()),
    sa.column("ended_at", UTCDateTime()),
)


def _device_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("model_id", sa.String(36), nullable=True),
        sa.Column("udi", sa.String(200), nullable=True),
        sa.Column("hardware_revision", sa.String(50), nullable=True),
        sa.Column("firmware_version", sa.String(50), nullable=True),
        sa.Column("ward_id", sa.String(36), nullable=True),
        sa.Column("location", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="unknown"),
        sa.Column("status_changed_at", UTCDateTime(), nullable=True),
        sa.Column("battery_percent", sa.Float(), nullable=True),
        sa.Column("signal_strength_dbm", sa.Float(), nullable=True),
        sa.Column("uptime_seconds", sa.Integer(), nullable=True),
        sa.Column("last_heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("decommissioned_at", UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "device_model",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("manufacturer", sa.String(100), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("measurement_types", sa.Text(), nullable=False),
        sa.Column("reporting_interval_seconds", sa.Float(), nullable=False),
        sa.Column("signing_public_key", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "organisation_id",
            "manufacturer",
            "model",
            name="uq_device_model_organisation_id_manufacturer_model",
        ),
    )
    # Plain ADD COLUMN rather than a batch rebuild: on SQLite, rebuilding `device` drops the
    # old copy, and with foreign keys on that would cascade into credentials and assignments.
    # `model_id` therefore carries no database-level foreign key; the service checks it.
    for column in _device_columns():
        op.add_column("device", column)
    op.create_index("ix_device_organisation_id_status", "device", ["organisation_id", "status"])
    op.create_index("ix_device_model_id", "device", ["model_id"])

    op.create_table(
        "device_assignment",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "device_id",
            sa.String(36),
            sa.ForeignKey(
                "device.id", ondelete="CASCADE", name="fk_device_assignment_device_id_device"
            ),
            nullable=False,
        ),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_device_assignment_device_id_started_at",
        "device_assignment",
        ["device_id", "started_at"],
    )
    op.create_index("ix_device_assignment_patient_id", "device_assignment", ["patient_id"])

    op.create_table(
        "device_alert",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column(
            "device_id",
            sa.String(36),
            sa.ForeignKey("device.id", ondelete="CASCADE", name="fk_device_alert_device_id_device"),
            nullable=False,
        ),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("message", sa.String(200), nullable=False),
        sa.Column("raised_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_device_alert_organisation_id_raised_at",
        "device_alert",
        ["organisation_id", "raised_at"],
    )
    op.create_index("ix_device_alert_device_id_kind", "device_alert", ["device_id", "kind"])

    op.create_table(
        "firmware_image",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("device_model.id", name="fk_firmware_image_model_id_device_model"),
            nullable=False,
        ),
        sa.Column("file_name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("min_version", sa.String(50), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("storage_key", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("model_id", "version", name="uq_firmware_image_model_id_version"),
    )
    op.create_index(
        "ix_firmware_image_organisation_id_created_at",
        "firmware_image",
        ["organisation_id", "created_at"],
    )

    op.create_table(
        "rollout_campaign",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column(
            "model_id",
            sa.String(36),
            sa.ForeignKey("device_model.id", name="fk_rollout_campaign_model_id_device_model"),
            nullable=False,
        ),
        sa.Column(
            "image_id",
            sa.String(36),
            sa.ForeignKey("firmware_image.id", name="fk_rollout_campaign_image_id_firmware_image"),
            nullable=False,
        ),
        sa.Column("waves", sa.Text(), nullable=False),
        sa.Column("filters", sa.Text(), nullable=False),
        sa.Column("success_threshold", sa.Float(), nullable=False),
        sa.Column("error_threshold", sa.Float(), nullable=False),
        sa.Column("override_maintenance_window", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.String(200), nullable=True),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("failures_accepted", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_rollout_campaign_organisation_id_created_at",
        "rollout_campaign",
        ["organisation_id", "created_at"],
    )
    op.create_index("ix_rollout_campaign_status", "rollout_campaign", ["status"])

    op.create_table(
        "rollout_target",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "campaign_id",
            sa.String(36),
            sa.ForeignKey(
                "rollout_campaign.id",
                ondelete="CASCADE",
                name="fk_rollout_target_campaign_id_rollout_campaign",
            ),
            nullable=False,
        ),
        sa.Column(
            "device_id",
            sa.String(36),
            sa.ForeignKey(
                "device.id", ondelete="CASCADE", name="fk_rollout_target_device_id_device"
            ),
            nullable=False,
        ),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("from_version", sa.String(50), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "campaign_id", "device_id", name="uq_rollout_target_campaign_id_device_id"
        ),
    )
    op.create_index("ix_rollout_target_device_id_status", "rollout_target", ["device_id", "status"])
    op.create_index(
        "ix_rollout_target_campaign_id_wave_status",
        "rollout_target",
        ["campaign_id", "wave", "status"],
    )

    # Devices already assigned keep that assignment as the start of their history, and those
    # heard from before count as offline until they report again.
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(device.c.id, device.c.patient_id, device.c.created_at).where(
            device.c.patient_id.is_not(None)
        )
    )
    while batch := rows.fetchmany(_BATCH):
        bind.execute(
            sa.insert(assignment),
            [
                {
                    "id": str(uuid.uuid4()),
                    "device_id": device_id,
                    "patient_id": patient_id,
                    "started_at": created_at,
                    "ended_at": None,
                }
                for device_id, patient_id, created_at in batch
            ],
        )
    bind.execute(
        sa.update(device).where(device.c.last_seen_at.is_not(None)).values(status="offline")
    )


def downgrade() -> None:
    op.drop_table("rollout_target")
    op.drop_table("rollout_campaign")
    op.drop_table("firmware_image")
    op.drop_table("device_alert")
    op.drop_table("device_assignment")
    op.drop_index("ix_device_model_id", "device")
    op.drop_index("ix_device_organisation_id_status", "device")
    for column in reversed(_device_columns()):
        op.drop_column("device", column.name)
    op.drop_table("device_model")
