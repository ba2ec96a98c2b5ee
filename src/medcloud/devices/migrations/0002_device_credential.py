"""devices: per-device credentials with rotation, revocation and last-used time

Revision ID: devices_0002
Revises: devices_0001
Create Date: 2026-12-07
"""

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.db import UTCDateTime

revision: str = "devices_0002"
down_revision: str | None = "devices_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000

device = sa.table(
    "device",
    sa.column("id", sa.String(36)),
    sa.column("token_hash", sa.String(64)),
    sa.column("created_at", UTCDateTime()),
)
credential = sa.table(
    "device_credential",
    sa.column("id", sa.String(36)),
    sa.column("device_id", sa.String(36)),
    sa.column("token_hash", sa.String(64)),
    sa.column("created_at", UTCDateTime()),
    sa.column("expires_at", UTCDateTime()),
    sa.column("revoked_at", UTCDateTime()),
)


def upgrade() -> None:
    # The foreign key is added last: on SQLite, dropping `device.token_hash` rebuilds the
    # device table, and dropping the old copy would cascade into credentials referencing it.
    op.create_table(
        "device_credential",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("device_id", sa.String(36), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_device_credential_token_hash"),
    )
    op.create_index(
        "ix_device_credential_device_id_created_at",
        "device_credential",
        ["device_id", "created_at"],
    )

    bind = op.get_bind()
    rows = bind.execute(sa.select(device.c.id, device.c.token_hash, device.c.created_at))
    while batch := rows.fetchmany(_BATCH):
        bind.execute(
            sa.insert(credential),
            [
                {
                    "id": str(uuid.uuid4()),
                    "device_id": device_id,
                    "token_hash": token_hash,
                    "created_at": created_at,
                    "expires_at": None,
                    "revoked_at": None,
                }
                for device_id, token_hash, created_at in batch
            ],
        )

    with op.batch_alter_table("device") as batch_op:
        batch_op.drop_constraint("uq_device_token_hash", type_="unique")
        batch_op.drop_column("token_hash")
    with op.batch_alter_table("device_credential") as batch_op:
        batch_op.create_foreign_key(
            "fk_device_credential_device_id_device",
            "device",
            ["device_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("device") as batch_op:
        batch_op.add_column(sa.Column("token_hash", sa.String(64), nullable=True))

    # A device keeps its newest working token. One whose tokens were all revoked or expired
    # gets the hash of a random secret nobody holds, so no revoked token works again.
    bind = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    working = sa.and_(
        credential.c.revoked_at.is_(None),
        sa.or_(credential.c.expires_at.is_(None), credential.c.expires_at > now),
    )
    newest: dict[str, str] = {}
    for device_id, token_hash in bind.execute(
        sa.select(credential.c.device_id, credential.c.token_hash)
        .where(working)
        .order_by(credential.c.created_at)
    ):
        newest[device_id] = token_hash
    for (device_id,) in bind.execute(sa.select(device.c.id)).all():
        token_hash = newest.get(device_id) or hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        bind.execute(
            sa.update(device).where(device.c.id == device_id).values(token_hash=token_hash)
        )

    # Dropped before the device table is rebuilt below, for the same reason as in upgrade().
    op.drop_table("device_credential")
    with op.batch_alter_table("device") as batch_op:
        batch_op.alter_column("token_hash", existing_type=sa.String(64), nullable=False)
        batch_op.create_unique_constraint("uq_device_token_hash", ["token_hash"])
