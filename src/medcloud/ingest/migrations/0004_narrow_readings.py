"""ingest: narrow readings (series id, timestamp, float32 value), rollups keyed by series

Revision ID: ingest_0004
Revises: ingest_0003
Create Date: 2026-12-06

Each reading repeated its organisation, device and patient as text, its type and unit, a
bigint id, its receipt time and a flag, under five indexes: 560 bytes on disk. Now the
identifiers name a series once (`reading_series`), and a reading is (timestamp, series id,
float32 value, drift seconds or NULL) under its primary key alone: about 76 bytes.
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.ingest.partitions import add_months, ensure_partitions_sync
from medcloud.platform.db import UTCDateTime

revision: str = "ingest_0004"
down_revision: str | None = "ingest_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITIONS_AHEAD = 3


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "reading_series",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("organisation_id", sa.String(36), nullable=False),
        sa.UniqueConstraint(
            "device_id",
            "type",
            "patient_key",
            "organisation_id",
            name="uq_reading_series_device_id_type_patient_key_organisation_id",
        ),
    )
    op.create_index("ix_reading_series_patient_key_type", "reading_series", ["patient_key", "type"])
    op.execute(
        "INSERT INTO reading_series (device_id, type, patient_key, organisation_id) "
        "SELECT DISTINCT device_id, type, coalesce(patient_id, ''), organisation_id FROM reading"
    )
    if postgres:
        _narrow_postgres()
    else:
        _narrow_sqlite()
    _rebuild_rollups(postgres)


def _narrow_postgres() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE reading RENAME TO reading_wide")
    # Without its indexes the old table's names are free and reading it out is a plain scan.
    op.execute("ALTER TABLE reading_wide DROP CONSTRAINT pk_reading")
    op.execute("ALTER TABLE reading_wide DROP CONSTRAINT uq_reading_device_id_type_timestamp")
    for index in (
        "ix_reading_device_id_timestamp",
        "ix_reading_patient_id_type_timestamp",
        "ix_reading_patient_id_timestamp",
    ):
        op.execute(f"DROP INDEX IF EXISTS {index}")
    partitions = bind.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'reading_wide'"
        )
    ).scalars()
    for name in list(partitions):
        op.execute(f"ALTER TABLE {name} RENAME TO {name}_wide")
    # Columns widest first, so no byte is lost to alignment: 8 + 4 + 4 (+ 4 when drifted).
    # fillfactor 100: each series' readings arrive in time order, so its index pages fill
    # from the left and are not split again.
    op.execute(
        """
        CREATE TABLE reading (
            "timestamp" timestamptz NOT NULL,
            series_id integer NOT NULL,
            value real NOT NULL,
            drift_seconds integer,
            CONSTRAINT pk_reading PRIMARY KEY (series_id, "timestamp") WITH (fillfactor = 100)
        ) PARTITION BY RANGE ("timestamp")
        """
    )
    op.execute("CREATE TABLE reading_default PARTITION OF reading DEFAULT")
    now = dt.datetime.now(dt.UTC)
    oldest = bind.execute(sa.text('SELECT min("timestamp") FROM reading_wide')).scalar()
    first = min(oldest, now) if oldest is not None else now
    ensure_partitions_sync(bind, first, add_months(now, PARTITIONS_AHEAD))
    op.execute(
        'INSERT INTO reading ("timestamp", series_id, value, drift_seconds) '
        'SELECT r."timestamp", s.id, r.value, CASE WHEN r.clock_drift THEN '
        'least(greatest(extract(epoch FROM r.received_at - r."timestamp"), 0), 2147483647)'
        "::integer END "
        "FROM reading_wide r JOIN reading_series s ON s.device_id = r.device_id "
        "AND s.type = r.type AND s.patient_key = coalesce(r.patient_id, '') "
        "AND s.organisation_id = r.organisation_id"
    )
    op.execute("DROP TABLE reading_wide")


def _narrow_sqlite() -> None:
    op.create_table(
        "reading_narrow",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("value", sa.REAL(), nullable=False),
        sa.Column("drift_seconds", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("series_id", "timestamp", name="pk_reading"),
        sqlite_with_rowid=False,
    )
    op.execute(
        'INSERT INTO reading_narrow (series_id, "timestamp", value, drift_seconds) '
        'SELECT s.id, r."timestamp", r.value, CASE WHEN r.clock_drift THEN '
        'max(0, CAST(round((julianday(r.received_at) - julianday(r."timestamp")) * 86400) '
        "AS INTEGER)) END "
        "FROM reading r JOIN reading_series s ON s.device_id = r.device_id "
        "AND s.type = r.type AND s.patient_key = coalesce(r.patient_id, '') "
        "AND s.organisation_id = r.organisation_id"
    )
    op.drop_table("reading")
    op.rename_table("reading_narrow", "reading")


def _rebuild_rollups(postgres: bool) -> None:
    op.drop_table("reading_rollup")
    op.create_table(
        "reading_rollup",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("low", sa.REAL(), nullable=False),
        sa.Column("high", sa.REAL(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "width", "bucket_start", name="pk_reading_rollup"),
        sqlite_with_rowid=False,
    )
    for width in (60, 300, 3600):
        bucket = (
            f'to_timestamp(floor(extract(epoch FROM "timestamp") / {width}) * {width})'
            if postgres
            # SQLAlchemy's text form of a UTC datetime, which every bucket must share to compare.
            else "strftime('%Y-%m-%d %H:%M:%S.000000', "
            f"CAST(strftime('%s', \"timestamp\") AS INTEGER) / {width} * {width}, 'unixepoch')"
        )
        op.execute(
            "INSERT INTO reading_rollup "  # noqa: S608  (constant expressions only)
            "(series_id, width, bucket_start, low, high, total, count) "
            f"SELECT series_id, {width}, {bucket}, min(value), max(value), "
            f"sum(CAST(value AS double precision)), count(*) FROM reading "
            f"GROUP BY series_id, {bucket}"
        )


def downgrade() -> None:
    # The wide rows held a receipt time and a unit that the narrow ones do not keep; going back
    # would have to invent them. Restore the backup taken before upgrading instead.
    raise NotImplementedError("ingest_0004 cannot be undone: restore the pre-upgrade backup")
