"""analytics: the alarm model, configurable rules, NEWS2 and the anomaly model registry

Revision ID: analytics_0003
Revises: analytics_0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "analytics_0003"
down_revision: str | None = "analytics_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "state IN ('active', 'acknowledged') AND subject <> ''"


def _new_alert_columns() -> list[sa.Column[object]]:
    # Built afresh for each use: a Column belongs to the one table it was first added to.
    return [
        sa.Column("ward_id", sa.String(36), nullable=True),
        sa.Column("subject", sa.String(80), nullable=False, server_default=""),
        sa.Column("state", sa.String(14), nullable=False, server_default="active"),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("worst_value", sa.Float(), nullable=True),
        sa.Column("rule_id", sa.String(36), nullable=True),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("latching", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("condition_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("model_version", sa.String(40), nullable=True),
        sa.Column("last_reading_at", UTCDateTime(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(36), nullable=True),
        sa.Column("silenced_until", UTCDateTime(), nullable=True),
        sa.Column("silenced_by", sa.String(36), nullable=True),
        sa.Column("silence_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("escalation_count", sa.Integer(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.drop_constraint("uq_alert_device_id_measurement_reading_timestamp_rule")
        for column in _new_alert_columns():
            batch.add_column(column)
    # Alerts of the old model were one per abnormal reading and could not be acknowledged:
    # they are kept as history, resolved. Technical alerts keep their open or resolved state.
    op.execute(
        "UPDATE alert SET state = 'resolved', condition_active = false, "
        "resolved_at = COALESCE(resolved_at, raised_at) "
        "WHERE source = 'clinical' OR resolved_at IS NOT NULL"
    )
    op.execute(
        "UPDATE alert SET subject = COALESCE('patient:' || patient_id, 'device:' || device_id)"
    )
    op.create_index(
        "uq_alert_open_subject_rule",
        "alert",
        ["subject", "rule"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    op.create_table(
        "alarm_condition",
        sa.Column("subject", sa.String(80), primary_key=True),
        sa.Column("rule", sa.String(60), primary_key=True),
        sa.Column("onset_at", UTCDateTime(), nullable=True),
        sa.Column("reference_value", sa.Float(), nullable=True),
        sa.Column("reference_at", UTCDateTime(), nullable=True),
        sa.Column("evaluated_to", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "alarm_rule",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("scope", sa.String(12), nullable=False),
        sa.Column("scope_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("key", sa.String(60), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("measurement", sa.String(40), nullable=True),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("hysteresis", sa.Float(), nullable=False),
        sa.Column("delay_seconds", sa.Float(), nullable=False),
        sa.Column("window_seconds", sa.Float(), nullable=True),
        sa.Column("latching", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(36), nullable=True),
        sa.UniqueConstraint(
            "organisation_id",
            "scope",
            "scope_id",
            "key",
            name="uq_alarm_rule_organisation_id_scope_scope_id_key",
        ),
    )
    op.create_table(
        "vital_latest",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("measurement", sa.String(40), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("measured_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "patient_scoring",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("spo2_scale", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(36), nullable=True),
    )
    op.create_table(
        "news2_score",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("risk", sa.String(12), nullable=False),
        sa.Column("components", sa.String(400), nullable=False),
        sa.Column("spo2_scale", sa.Integer(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("patient_id", "scored_at", name="uq_news2_score_patient_id_scored_at"),
    )
    op.create_index(
        "ix_news2_score_patient_id_scored_at", "news2_score", ["patient_id", "scored_at"]
    )
    op.create_table(
        "anomaly_model",
        sa.Column("version", sa.String(40), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("trained_from", UTCDateTime(), nullable=True),
        sa.Column("trained_to", UTCDateTime(), nullable=True),
        sa.Column("trained_windows", sa.Integer(), nullable=False),
        sa.Column("features", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("precision", sa.Float(), nullable=False),
        sa.Column("recall", sa.Float(), nullable=False),
        sa.Column("onnx", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.String(400), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "anomaly_model",
        "news2_score",
        "patient_scoring",
        "vital_latest",
        "alarm_rule",
        "alarm_condition",
    ):
        op.drop_table(table)
    op.drop_index("uq_alert_open_subject_rule", table_name="alert")
    # The old shape allowed one alert per reading; open alarms of the new one fit it as they are.
    with op.batch_alter_table("alert") as batch:
        for column in reversed(_new_alert_columns()):
            batch.drop_column(column.name)
        batch.create_unique_constraint(
            "uq_alert_device_id_measurement_reading_timestamp_rule",
            ["device_id", "measurement", "reading_timestamp", "rule"],
        )
