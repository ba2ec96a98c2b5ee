"""identity: wards, patients, refresh tokens, invitations, break-glass, lockout and MFA

Revision ID: identity_0002
Revises: identity_0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "identity_0002"
down_revision: str | None = "identity_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        batch.add_column(
            sa.Column("require_admin_mfa", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("user_account") as batch:
        batch.alter_column("password_hash", existing_type=sa.String(200), nullable=True)
        batch.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("mfa_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("last_login_at", UTCDateTime(), nullable=True))
    op.create_table(
        "ward",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organisation_id",
            sa.String(36),
            sa.ForeignKey("organisation.id", name="fk_ward_organisation_id_organisation"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("organisation_id", "name", name="uq_ward_organisation_id_name"),
    )
    op.create_index("ix_ward_organisation_id", "ward", ["organisation_id"])
    op.create_table(
        "ward_member",
        sa.Column(
            "ward_id",
            sa.String(36),
            sa.ForeignKey("ward.id", name="fk_ward_member_ward_id_ward"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("user_account.id", name="fk_ward_member_user_id_user_account"),
            primary_key=True,
        ),
    )
    op.create_index("ix_ward_member_user_id", "ward_member", ["user_id"])
    op.create_table(
        "patient",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "organisation_id",
            sa.String(36),
            sa.ForeignKey("organisation.id", name="fk_patient_organisation_id_organisation"),
            nullable=False,
        ),
        sa.Column("identifier_system", sa.String(200), nullable=False),
        sa.Column("identifier_value", sa.String(100), nullable=False),
        sa.Column("family_name", sa.String(100), nullable=False),
        sa.Column("given_name", sa.String(100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column(
            "ward_id",
            sa.String(36),
            sa.ForeignKey("ward.id", name="fk_patient_ward_id_ward"),
            nullable=True,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "organisation_id",
            "identifier_system",
            "identifier_value",
            name="uq_patient_organisation_id_identifier_system_identifier_value",
        ),
    )
    op.create_index("ix_patient_ward_id", "patient", ["ward_id"])
    op.create_index(
        "ix_patient_organisation_id_created_at", "patient", ["organisation_id", "created_at"]
    )
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("user_account.id", name="fk_refresh_token_user_id_user_account"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("spent_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_refresh_token_token_hash"),
    )
    op.create_index("ix_refresh_token_family_id", "refresh_token", ["family_id"])
    op.create_index("ix_refresh_token_user_id", "refresh_token", ["user_id"])
    op.create_table(
        "invitation",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("user_account.id", name="fk_invitation_user_id_user_account"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_invitation_token_hash"),
    )
    op.create_index("ix_invitation_user_id", "invitation", ["user_id"])
    op.create_table(
        "break_glass_grant",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("user_account.id", name="fk_break_glass_grant_user_id_user_account"),
            nullable=False,
        ),
        sa.Column(
            "patient_id",
            sa.String(36),
            sa.ForeignKey("patient.id", name="fk_break_glass_grant_patient_id_patient"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_break_glass_grant_user_id_expires_at", "break_glass_grant", ["user_id", "expires_at"]
    )


def downgrade() -> None:
    for table in (
        "break_glass_grant",
        "invitation",
        "refresh_token",
        "patient",
        "ward_member",
        "ward",
    ):
        op.drop_table(table)
    with op.batch_alter_table("user_account") as batch:
        for column in (
            "last_login_at",
            "mfa_enabled",
            "totp_secret",
            "locked_until",
            "failed_logins",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("organisation") as batch:
        batch.drop_column("require_admin_mfa")
