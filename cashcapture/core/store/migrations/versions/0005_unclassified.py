"""fills of NDCs the drug directory does not hold: captured unclassified (issue 13);
fills.schedule widened to 4 characters ("CIII" did not fit VARCHAR(3): PostgreSQL refused
every schedule III capture)

Revision ID: unclassified
Revises: multistate
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "unclassified"
down_revision = "multistate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unclassified", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.alter_column(
            "schedule",
            type_=sa.String(4),
            existing_type=sa.String(3),
            existing_nullable=True,
            comment="drug directory: CII..CV; NULL while unclassified",
            existing_comment="drug list: CII..CV",
        )


def downgrade() -> None:
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.alter_column(
            "schedule",
            type_=sa.String(3),
            existing_type=sa.String(4),
            existing_nullable=True,
            comment="drug list: CII..CV",
            existing_comment="drug directory: CII..CV; NULL while unclassified",
        )
        batch_op.drop_column("unclassified")
