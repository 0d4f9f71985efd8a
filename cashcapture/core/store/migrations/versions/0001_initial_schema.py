"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:22:41.286953
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cashcapture.core.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pharmacies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dea", sa.String(length=9), nullable=False, comment="PHA03"),
        sa.Column("ncpdp_id", sa.String(length=7), nullable=True, comment="PHA02"),
        sa.Column("npi", sa.String(length=10), nullable=True, comment="PHA01"),
        sa.Column("name", sa.String(length=60), nullable=False, comment="PHA04"),
        sa.Column("address1", sa.String(length=30), nullable=True, comment="PHA05"),
        sa.Column("address2", sa.String(length=30), nullable=True, comment="PHA06"),
        sa.Column("city", sa.String(length=25), nullable=True, comment="PHA07"),
        sa.Column("state", sa.String(length=2), nullable=False, comment="PHA08"),
        sa.Column("zip", sa.String(length=9), nullable=True, comment="PHA09"),
        sa.Column("phone", sa.String(length=10), nullable=True, comment="PHA10"),
        sa.Column("chain", sa.String(length=60), nullable=True),
        sa.Column(
            "submitter_id",
            sa.String(length=40),
            nullable=True,
            comment="pharmacies sharing it go in one file",
        ),
        sa.Column("reg_key", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacies")),
        sa.UniqueConstraint("dea", name=op.f("uq_pharmacies_dea")),
        sa.UniqueConstraint("ncpdp_id", name=op.f("uq_pharmacies_ncpdp_id")),
        sa.UniqueConstraint("npi", name=op.f("uq_pharmacies_npi")),
    )
    with op.batch_alter_table("pharmacies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pharmacies_submitter_id"), ["submitter_id"], unique=False
        )

    op.create_table(
        "submissions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("submitter_id", sa.String(length=40), nullable=False),
        sa.Column("extract_date", sa.Date(), nullable=True),
        sa.Column("zero_report", sa.Boolean(), nullable=False),
        sa.Column("fill_date_min", sa.Date(), nullable=True),
        sa.Column("fill_date_max", sa.Date(), nullable=True),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("valid_record_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=9), nullable=False),
        sa.Column(
            "created_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "uploaded_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "processed_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "collector_status", sa.String(length=40), nullable=True, comment="Accept, File Failed"
        ),
        sa.Column("collector_answer", sa.Text(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "state IN ('written', 'uploading', 'uploaded', 'processed', 'failed')",
            name=op.f("ck_submissions_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
        sa.UniqueConstraint("file_name", name=op.f("uq_submissions_file_name")),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_submissions_extract_date"), ["extract_date"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_submissions_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_submissions_submitter_id"), ["submitter_id"], unique=False
        )

    op.create_table(
        "claims",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "received_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "answered_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("transaction_code", sa.String(length=2), nullable=False),
        sa.Column("bin", sa.String(length=6), nullable=False),
        sa.Column("pcn", sa.String(length=10), nullable=True),
        sa.Column("route", sa.String(length=13), nullable=False),
        sa.Column("service_provider_id", sa.String(length=15), nullable=True),
        sa.Column(
            "pharmacy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "status",
            sa.String(length=1),
            nullable=True,
            comment="response status of the first transaction: P D A R C ...",
        ),
        sa.Column("reject_codes", sa.String(length=200), nullable=True, comment="space separated"),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "route IN ('cash', 'insured', 'certification')", name=op.f("ck_claims_route")
        ),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"], ["pharmacies.id"], name=op.f("fk_claims_pharmacy_id_pharmacies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_claims_content_hash"), ["content_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_claims_received_at"), ["received_at"], unique=False)

    op.create_table(
        "submission_pharmacies",
        sa.Column(
            "submission_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "pharmacy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"],
            ["pharmacies.id"],
            name=op.f("fk_submission_pharmacies_pharmacy_id_pharmacies"),
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_submission_pharmacies_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "submission_id", "pharmacy_id", name=op.f("pk_submission_pharmacies")
        ),
    )
    op.create_table(
        "fills",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "pharmacy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("rx_number", sa.String(length=25), nullable=False, comment="DSP02"),
        sa.Column("fill_number", sa.Integer(), nullable=False, comment="DSP06, 0 = new Rx"),
        sa.Column("date_of_service", sa.Date(), nullable=False, comment="DSP05 date filled"),
        sa.Column("state", sa.String(length=7), nullable=False),
        sa.Column("route", sa.String(length=7), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, comment="bumped on every change"),
        sa.Column("needs_report", sa.Boolean(), nullable=False),
        sa.Column(
            "reported_status",
            sa.String(length=2),
            nullable=True,
            comment="DSP01 last delivered: 00 01 02, NULL = never reported",
        ),
        sa.Column(
            "reported_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_submission_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "created_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_by_claim_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "updated_by_claim_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("patient_id_jurisdiction", sa.String(length=2), nullable=True, comment="PAT01"),
        sa.Column("patient_id_qualifier", sa.String(length=2), nullable=True, comment="PAT02"),
        sa.Column("patient_id", sa.String(length=20), nullable=True, comment="PAT03"),
        sa.Column("patient_last_name", sa.String(length=50), nullable=True, comment="PAT07"),
        sa.Column("patient_first_name", sa.String(length=50), nullable=True, comment="PAT08"),
        sa.Column("patient_middle_name", sa.String(length=30), nullable=True, comment="PAT09"),
        sa.Column("patient_address1", sa.String(length=30), nullable=True, comment="PAT12"),
        sa.Column("patient_address2", sa.String(length=30), nullable=True, comment="PAT13"),
        sa.Column("patient_city", sa.String(length=20), nullable=True, comment="PAT14"),
        sa.Column("patient_state", sa.String(length=2), nullable=True, comment="PAT15"),
        sa.Column("patient_zip", sa.String(length=9), nullable=True, comment="PAT16"),
        sa.Column("patient_phone", sa.String(length=10), nullable=True, comment="PAT17"),
        sa.Column("patient_dob", sa.Date(), nullable=True, comment="PAT18"),
        sa.Column("patient_gender", sa.String(length=1), nullable=True, comment="PAT19 M F U"),
        sa.Column("species", sa.String(length=2), nullable=True, comment="PAT20 01 human 02 vet"),
        sa.Column("patient_country", sa.String(length=20), nullable=True, comment="PAT22"),
        sa.Column("date_written", sa.Date(), nullable=True, comment="DSP03"),
        sa.Column("refills_authorized", sa.Integer(), nullable=True, comment="DSP04"),
        sa.Column("product_id_qualifier", sa.String(length=2), nullable=False, comment="DSP07"),
        sa.Column("ndc", sa.String(length=15), nullable=False, comment="DSP08, 11-digit NDC"),
        sa.Column(
            "quantity",
            cashcapture.core.store.types.Quantity(precision=14, scale=3),
            nullable=True,
            comment="DSP09",
        ),
        sa.Column("days_supply", sa.Integer(), nullable=True, comment="DSP10"),
        sa.Column("dosage_units", sa.String(length=2), nullable=True, comment="DSP11"),
        sa.Column("rx_origin", sa.String(length=2), nullable=True, comment="DSP12"),
        sa.Column("partial_fill", sa.String(length=2), nullable=True, comment="DSP13 01 yes 02 no"),
        sa.Column("pharmacist_npi", sa.String(length=10), nullable=True, comment="DSP14"),
        sa.Column(
            "payment_type", sa.String(length=2), nullable=True, comment="DSP16, 01 private pay"
        ),
        sa.Column("schedule", sa.String(length=3), nullable=True, comment="drug list: CII..CV"),
        sa.Column("compound", sa.Boolean(), nullable=False),
        sa.Column("prescriber_npi", sa.String(length=10), nullable=True, comment="PRE01"),
        sa.Column("prescriber_dea", sa.String(length=9), nullable=True, comment="PRE02"),
        sa.Column("prescriber_last_name", sa.String(length=50), nullable=True, comment="PRE05"),
        sa.Column("prescriber_first_name", sa.String(length=50), nullable=True, comment="PRE06"),
        sa.Column("prescriber_phone", sa.String(length=10), nullable=True),
        sa.CheckConstraint("route IN ('cash', 'insured')", name=op.f("ck_fills_route")),
        sa.CheckConstraint("state IN ('new', 'revised', 'voided')", name=op.f("ck_fills_state")),
        sa.ForeignKeyConstraint(
            ["created_by_claim_id"], ["claims.id"], name=op.f("fk_fills_created_by_claim_id_claims")
        ),
        sa.ForeignKeyConstraint(
            ["last_submission_id"],
            ["submissions.id"],
            name=op.f("fk_fills_last_submission_id_submissions"),
        ),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"], ["pharmacies.id"], name=op.f("fk_fills_pharmacy_id_pharmacies")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_claim_id"], ["claims.id"], name=op.f("fk_fills_updated_by_claim_id_claims")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint(
            "pharmacy_id", "rx_number", "fill_number", "date_of_service", name="uq_fills_key"
        ),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index("ix_fills_date_of_service", ["date_of_service"], unique=False)
        batch_op.create_index(
            "ix_fills_report_queue", ["needs_report", "pharmacy_id"], unique=False
        )

    op.create_table(
        "fill_ingredients",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fill_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False, comment="CDI01, from 1"),
        sa.Column("product_id_qualifier", sa.String(length=2), nullable=False, comment="CDI02"),
        sa.Column("ndc", sa.String(length=15), nullable=False, comment="CDI03"),
        sa.Column(
            "quantity",
            cashcapture.core.store.types.Quantity(precision=14, scale=3),
            nullable=False,
            comment="CDI04",
        ),
        sa.Column("dosage_units", sa.String(length=2), nullable=True, comment="CDI05"),
        sa.ForeignKeyConstraint(
            ["fill_id"],
            ["fills.id"],
            name=op.f("fk_fill_ingredients_fill_id_fills"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fill_ingredients")),
        sa.UniqueConstraint("fill_id", "sequence", name="uq_fill_ingredients_seq"),
    )
    with op.batch_alter_table("fill_ingredients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fill_ingredients_fill_id"), ["fill_id"], unique=False)

    op.create_table(
        "record_rejects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "submission_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("fill_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("segment", sa.String(length=3), nullable=True),
        sa.Column("element", sa.String(length=5), nullable=True),
        sa.Column("code", sa.String(length=20), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "created_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "resolved_at", cashcapture.core.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["fill_id"], ["fills.id"], name=op.f("fk_record_rejects_fill_id_fills")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_record_rejects_submission_id_submissions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_rejects")),
    )
    with op.batch_alter_table("record_rejects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_record_rejects_fill_id"), ["fill_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_record_rejects_submission_id"), ["submission_id"], unique=False
        )

    op.create_table(
        "submission_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "submission_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("fill_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reporting_status", sa.String(length=2), nullable=False, comment="DSP01 sent"),
        sa.Column("fill_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["fill_id"], ["fills.id"], name=op.f("fk_submission_records_fill_id_fills")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_submission_records_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission_records")),
        sa.UniqueConstraint("submission_id", "fill_id", name="uq_submission_records"),
    )
    with op.batch_alter_table("submission_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_submission_records_fill_id"), ["fill_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("submission_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submission_records_fill_id"))

    op.drop_table("submission_records")
    with op.batch_alter_table("record_rejects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_rejects_submission_id"))
        batch_op.drop_index(batch_op.f("ix_record_rejects_fill_id"))

    op.drop_table("record_rejects")
    with op.batch_alter_table("fill_ingredients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fill_ingredients_fill_id"))

    op.drop_table("fill_ingredients")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index("ix_fills_report_queue")
        batch_op.drop_index("ix_fills_date_of_service")

    op.drop_table("fills")
    op.drop_table("submission_pharmacies")
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_claims_received_at"))
        batch_op.drop_index(batch_op.f("ix_claims_content_hash"))

    op.drop_table("claims")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submissions_submitter_id"))
        batch_op.drop_index(batch_op.f("ix_submissions_state"))
        batch_op.drop_index(batch_op.f("ix_submissions_extract_date"))

    op.drop_table("submissions")
    with op.batch_alter_table("pharmacies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pharmacies_submitter_id"))

    op.drop_table("pharmacies")
