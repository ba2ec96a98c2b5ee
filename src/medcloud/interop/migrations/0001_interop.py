"""interop: HL7 interfaces and the control ids of the messages answered

Revision ID: interop_0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "interop_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("interop",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_interface",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sending_application", sa.String(length=180), nullable=True),
        sa.Column("sending_facility", sa.String(length=180), nullable=True),
        sa.Column("allowed_addresses", sa.JSON(), nullable=False),
        sa.Column("identifier_system", sa.String(length=200), nullable=False),
        sa.Column("register_patients", sa.Boolean(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_interface")),
        sa.UniqueConstraint(
            "organisation_id", "name", name="uq_hl7_interface_organisation_id_name"
        ),
    )
    op.create_index(
        "ix_hl7_interface_organisation_id", "hl7_interface", ["organisation_id"], unique=False
    )
    op.create_table(
        "hl7_message",
        sa.Column("interface_id", sa.String(length=36), nullable=False),
        sa.Column("control_id", sa.String(length=199), nullable=False),
        sa.Column("message_type", sa.String(length=20), nullable=False),
        sa.Column("ack_code", sa.String(length=2), nullable=False),
        sa.Column("ack", sa.Text(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("interface_id", "control_id", name=op.f("pk_hl7_message")),
    )
    op.create_index("ix_hl7_message_received_at", "hl7_message", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_table("hl7_message")
    op.drop_table("hl7_interface")
