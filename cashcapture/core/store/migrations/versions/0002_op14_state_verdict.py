"""the state's verdict on a submission, its per-pharmacy counts (issue 14)

Revision ID: op14_state_verdict
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cashcapture.core.store.types

revision = "op14_state_verdict"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "state_verdict", sa.String(length=10), nullable=True, comment="accepted failed ..."
            )
        )
        batch_op.add_column(
            sa.Column(
                "state_recorded_at",
                cashcapture.core.store.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "state_note", sa.Text(), nullable=True, comment="the collector's words, if any"
            )
        )
        batch_op.create_check_constraint(
            "state_verdict", "state_verdict IN ('accepted', 'failed', 'in process')"
        )
    op.create_table(
        "state_file_counts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("submission_id", _ID, nullable=False),
        sa.Column("pharmacy_id", _ID, nullable=False),
        *(
            sa.Column(name, sa.Integer(), nullable=False)
            for name in (
                "total",
                "duplicate",
                "in_process",
                "errors",
                "warnings",
                "imported",
                "voided",
                "voids_not_found",
            )
        ),
        sa.Column(
            "recorded_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"],
            ["pharmacies.id"],
            name=op.f("fk_state_file_counts_pharmacy_id_pharmacies"),
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_state_file_counts_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_file_counts")),
        sa.UniqueConstraint("submission_id", "pharmacy_id", name="uq_state_file_counts"),
    )
    with op.batch_alter_table("state_file_counts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_state_file_counts_submission_id"), ["submission_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("state_file_counts")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_submissions_state_verdict", type_="check")
        batch_op.drop_column("state_note")
        batch_op.drop_column("state_recorded_at")
        batch_op.drop_column("state_verdict")
