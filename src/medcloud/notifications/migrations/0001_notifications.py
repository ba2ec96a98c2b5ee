"""notifications: recipients, rosters, escalation policies, deliveries, inbox and live feed

Revision ID: notifications_0001
Revises:
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "notifications_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("notifications",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notify_alarm",
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("ward_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("condition", sa.String(length=60), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("raised_at", UTCDateTime(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("repeat_after_seconds", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=14), nullable=False),
        sa.Column("next_at", UTCDateTime(), nullable=True),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("stopped_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_notify_alarm")),
    )
    op.create_index("ix_notify_alarm_due", "notify_alarm", ["state", "next_at"], unique=False)
    op.create_table(
        "notify_breaker",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=60), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=True),
        sa.Column("alarm_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_notify_breaker")),
    )
    op.create_table(
        "notify_delivery",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("address", sa.String(length=2000), nullable=False),
        sa.Column("target", sa.String(length=80), nullable=False),
        sa.Column("fallbacks", sa.JSON(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("raised_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_delivery")),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_notify_delivery_alert", "notify_delivery", ["alert_id"], unique=False)
    op.create_index(
        "ix_notify_delivery_due", "notify_delivery", ["status", "next_attempt_at"], unique=False
    )
    op.create_index("ix_notify_delivery_provider", "notify_delivery", ["provider_id"], unique=False)
    op.create_table(
        "notify_feed",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_notify_feed")),
    )
    op.create_index(
        "ix_notify_feed_organisation", "notify_feed", ["organisation_id", "seq"], unique=False
    )
    op.create_table(
        "notify_inbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_inbox")),
    )
    op.create_index("ix_notify_inbox_user", "notify_inbox", ["user_id", "created_at"], unique=False)
    op.create_table(
        "notify_link_use",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_notify_link_use")),
    )
    op.create_table(
        "notify_organisation",
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("fallback_email", sa.String(length=320), nullable=True),
        sa.Column("fallback_phone", sa.String(length=20), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("organisation_id", name=op.f("pk_notify_organisation")),
    )
    op.create_table(
        "notify_policy",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("ward_key", sa.String(length=36), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("repeat_after_seconds", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_policy")),
        sa.UniqueConstraint(
            "organisation_id",
            "ward_key",
            "priority",
            name=op.f("uq_notify_policy_organisation_id_ward_key_priority"),
        ),
    )
    op.create_table(
        "notify_recipient",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notify_recipient")),
    )
    op.create_index(
        op.f("ix_notify_recipient_organisation_id"),
        "notify_recipient",
        ["organisation_id"],
        unique=False,
    )
    op.create_table(
        "notify_shift",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("ward_id", sa.String(length=36), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("duty", sa.String(length=30), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_shift")),
    )
    op.create_index(op.f("ix_notify_shift_user_id"), "notify_shift", ["user_id"], unique=False)
    op.create_index(
        "ix_notify_shift_ward_duty",
        "notify_shift",
        ["organisation_id", "ward_id", "duty"],
        unique=False,
    )
    op.create_table(
        "notify_webhook",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_webhook")),
    )
    op.create_index(
        op.f("ix_notify_webhook_organisation_id"),
        "notify_webhook",
        ["organisation_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("notify_webhook")
    op.drop_table("notify_shift")
    op.drop_table("notify_recipient")
    op.drop_table("notify_policy")
    op.drop_table("notify_organisation")
    op.drop_table("notify_link_use")
    op.drop_table("notify_inbox")
    op.drop_table("notify_feed")
    op.drop_table("notify_delivery")
    op.drop_table("notify_breaker")
    op.drop_table("notify_alarm")
