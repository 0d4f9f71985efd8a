"""several states' PMPs: registrations, mail order, per-state reports (issue 12)

Revision ID: multistate
Revises: remote_path
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cashcapture.core.store.types

revision = "multistate"
down_revision = "remote_path"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = cashcapture.core.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pharmacy_registrations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("pharmacy_id", _ID, sa.ForeignKey("pharmacies.id"), nullable=False),
        sa.Column("state", sa.String(2), nullable=False, comment="the PMP's state"),
        sa.Column("submitter_id", sa.String(40), nullable=True),
        sa.Column("reg_key", sa.String(40), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("pharmacy_id", "state", name="uq_pharmacy_registrations"),
    )
    op.create_table(
        "fill_reports",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("fill_id", _ID, sa.ForeignKey("fills.id"), nullable=False),
        sa.Column("state", sa.String(2), nullable=False, comment="another state's PMP"),
        sa.Column("reported_status", sa.String(2), nullable=False, comment="DSP01 delivered"),
        sa.Column("reported_version", sa.Integer(), nullable=False),
        sa.Column("reported_at", _WHEN, nullable=False),
        sa.Column("submission_id", _ID, sa.ForeignKey("submissions.id"), nullable=False),
        sa.UniqueConstraint("fill_id", "state", name="uq_fill_reports"),
    )
    with op.batch_alter_table("pharmacies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "mail_order",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
                comment="ships to patients in other states",
            )
        )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("service_type", sa.String(2), nullable=True, comment="147-U7, 05 mail order")
        )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pmp_state", sa.String(2), nullable=True, comment="NULL: the home state's")
        )


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("pmp_state")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_column("service_type")
    with op.batch_alter_table("pharmacies", schema=None) as batch_op:
        batch_op.drop_column("mail_order")
    op.drop_table("fill_reports")
    op.drop_table("pharmacy_registrations")
