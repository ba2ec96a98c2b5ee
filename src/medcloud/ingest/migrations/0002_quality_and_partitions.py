"""ingest: quarantine, clock-drift flag, patient indexes; monthly partitions on PostgreSQL

Revision ID: ingest_0002
Revises: ingest_0001
Create Date: 2026-12-01
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.ingest.partitions import add_months, ensure_partitions_sync
from medcloud.platform.db import UTCDateTime

revision: str = "ingest_0002"
down_revision: str | None = "ingest_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITIONS_AHEAD = 3
_COLUMNS = "id, organisation_id, device_id, patient_id, type, value, unit, timestamp, received_at"


def upgrade() -> None:
    op.create_table(
        "quarantined_reading",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("transport", sa.String(20), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_quarantined_reading_organisation_id_id",
        "quarantined_reading",
        ["organisation_id", "id"],
    )
    op.create_index(
        "ix_quarantined_reading_device_id_id", "quarantined_reading", ["device_id", "id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        _partition_readings()
        return
    op.add_column(
        "reading",
        sa.Column("clock_drift", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_reading_patient_id_type_timestamp", "reading", ["patient_id", "type", "timestamp"]
    )
    op.create_index("ix_reading_patient_id_timestamp", "reading", ["patient_id", "timestamp"])


def _partition_readings() -> None:
    """Move `reading` into a table range-partitioned by month, keeping ids and their sequence."""
    bind = op.get_bind()
    op.execute("ALTER TABLE reading RENAME TO reading_unpartitioned")
    op.execute("ALTER TABLE reading_unpartitioned RENAME CONSTRAINT pk_reading TO pk_reading_old")
    op.execute(
        "ALTER TABLE reading_unpartitioned RENAME CONSTRAINT "
        "uq_reading_device_id_type_timestamp TO uq_reading_old"
    )
    op.execute("ALTER INDEX ix_reading_device_id_timestamp RENAME TO ix_reading_old")
    # The sequence must outlive the old table, whose column owns it.
    op.execute("ALTER SEQUENCE reading_id_seq OWNED BY NONE")
    op.execute(
        """
        CREATE TABLE reading (
            id bigint NOT NULL DEFAULT nextval('reading_id_seq'),
            organisation_id varchar(36) NOT NULL,
            device_id varchar(36) NOT NULL,
            patient_id varchar(64),
            type varchar(40) NOT NULL,
            value double precision NOT NULL,
            unit varchar(20) NOT NULL,
            "timestamp" timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            clock_drift boolean NOT NULL DEFAULT false,
            CONSTRAINT pk_reading PRIMARY KEY (id, "timestamp"),
            CONSTRAINT uq_reading_device_id_type_timestamp UNIQUE (device_id, type, "timestamp")
        ) PARTITION BY RANGE ("timestamp")
        """
    )
    op.execute('CREATE INDEX ix_reading_device_id_timestamp ON reading (device_id, "timestamp")')
    op.execute(
        "CREATE INDEX ix_reading_patient_id_type_timestamp "
        'ON reading (patient_id, type, "timestamp")'
    )
    op.execute('CREATE INDEX ix_reading_patient_id_timestamp ON reading (patient_id, "timestamp")')
    op.execute("CREATE TABLE reading_default PARTITION OF reading DEFAULT")
    now = dt.datetime.now(dt.UTC)
    oldest = bind.execute(sa.text('SELECT min("timestamp") FROM reading_unpartitioned')).scalar()
    first = min(oldest, now) if oldest is not None else now
    ensure_partitions_sync(bind, first, add_months(now, PARTITIONS_AHEAD))
    op.execute(
        f"INSERT INTO reading ({_COLUMNS}) SELECT {_COLUMNS} FROM reading_unpartitioned"  # noqa: S608  (constant column list)
    )
    op.execute("DROP TABLE reading_unpartitioned")
    op.execute("ALTER SEQUENCE reading_id_seq OWNED BY reading.id")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE reading RENAME TO reading_partitioned")
        op.execute("ALTER SEQUENCE reading_id_seq OWNED BY NONE")
        for name in ("pk_reading", "uq_reading_device_id_type_timestamp"):
            op.execute(f"ALTER TABLE reading_partitioned RENAME CONSTRAINT {name} TO {name}_p")
        for name in (
            "ix_reading_device_id_timestamp",
            "ix_reading_patient_id_type_timestamp",
            "ix_reading_patient_id_timestamp",
        ):
            op.execute(f"ALTER INDEX {name} RENAME TO {name}_p")
        op.execute(
            """
            CREATE TABLE reading (
                id bigint NOT NULL DEFAULT nextval('reading_id_seq'),
                organisation_id varchar(36) NOT NULL,
                device_id varchar(36) NOT NULL,
                patient_id varchar(64),
                type varchar(40) NOT NULL,
                value double precision NOT NULL,
                unit varchar(20) NOT NULL,
                "timestamp" timestamptz NOT NULL,
                received_at timestamptz NOT NULL,
                CONSTRAINT pk_reading PRIMARY KEY (id),
                CONSTRAINT uq_reading_device_id_type_timestamp UNIQUE (device_id, type, "timestamp")
            )
            """
        )
        op.execute(
            'CREATE INDEX ix_reading_device_id_timestamp ON reading (device_id, "timestamp")'
        )
        op.execute(
            f"INSERT INTO reading ({_COLUMNS}) SELECT {_COLUMNS} FROM reading_partitioned"  # noqa: S608
        )
        op.execute("DROP TABLE reading_partitioned")
        op.execute("ALTER SEQUENCE reading_id_seq OWNED BY reading.id")
    else:
        op.drop_index("ix_reading_patient_id_timestamp", "reading")
        op.drop_index("ix_reading_patient_id_type_timestamp", "reading")
        with op.batch_alter_table("reading") as batch:
            batch.drop_column("clock_drift")
    op.drop_table("quarantined_reading")
