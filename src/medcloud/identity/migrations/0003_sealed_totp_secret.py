"""identity: TOTP secrets sealed under the data keys

Revision ID: identity_0003
Revises: identity_0002
Create Date: 2027-01-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from medcloud.platform.sealing import seal_stored, unseal_stored

revision: str = "identity_0003"
down_revision: str | None = "identity_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A sealed 32-character secret takes 140 characters. SQLite enforces no VARCHAR length, and
# rebuilding user_account there (how SQLite changes a type) would fight the keys that refer to it.


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("user_account", "totp_secret", type_=sa.Text(), existing_type=sa.String(64))
    seal_stored(op.get_bind(), "user_account", "totp_secret")


def downgrade() -> None:
    unseal_stored(op.get_bind(), "user_account", "totp_secret")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("user_account", "totp_secret", type_=sa.String(64), existing_type=sa.Text())
