"""notifications: webhook signing secrets sealed under the data keys

Revision ID: notifications_0002
Revises: notifications_0001
Create Date: 2027-01-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.sealing import seal_stored, unseal_stored

revision: str = "notifications_0002"
down_revision: str | None = "notifications_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WIDE = sa.Text()
"""A sealed `whsec_` secret takes 164 characters (SQLite keeps any length in a VARCHAR)."""
NARROW = sa.String(100)


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        op.alter_column("notify_webhook", "secret", type_=WIDE, existing_type=NARROW)
    seal_stored(connection, "notify_webhook", "secret")


def downgrade() -> None:
    connection = op.get_bind()
    unseal_stored(connection, "notify_webhook", "secret")
    if connection.dialect.name == "postgresql":
        op.alter_column("notify_webhook", "secret", type_=NARROW, existing_type=WIDE)
