"""where a file was delivered: its remote path, packed name included (issue 12)

Revision ID: remote_path
Revises: op14_state_verdict
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "remote_path"
down_revision = "op14_state_verdict"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "remote_path",
                sa.String(length=600),
                nullable=True,
                comment="folder/NAME.dat[.pgp] or NAME.zip as sent; NULL until delivery starts",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("remote_path")
