"""Tables of the capture store (SQLAlchemy 2 typed models).

Identity lives in the database: a fill is unique per pharmacy, Rx number,
fill number and date of service (what a B2 or B3 matches on), so several
adapter processes sharing one PostgreSQL database cannot double a fill.

Fill fields are stored normalised, one column per ASAP 4.1 element the state
needs (the element id is in each column's comment), so the extract maps
columns to elements without parsing claims again.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from cashcapture.core.states import FillState, SubmissionState
from cashcapture.core.store.types import Id, Quantity, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Vocabularies (stored as short strings; CHECK constraints keep them honest).
ROUTES = ("cash", "insured", "certification")
FILL_ROUTES = ("cash", "insured")
FILL_STATES = tuple(FillState)
SUBMISSION_STATES = tuple(SubmissionState)
# What the state's collector said of a delivered file; NULL until an operator records it.
STATE_VERDICTS = ("accepted", "failed", "in process")
# ASAP DSP01 reporting status codes.
NEW_RECORD, REVISED_RECORD, VOID_RECORD = "00", "01", "02"
STATE_REJECT = "state"  # RecordReject.code of a record the state's collector rejected
MAIL_ORDER = "05"  # fills.service_type (NCPDP 147-U7 Pharmacy Service Type): mail order


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Pharmacy(Base):
    """A registered dispenser; the state knows it by its DEA number (PHA03)."""

    __tablename__ = "pharmacies"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dea: Mapped[str] = mapped_column(String(9), unique=True, comment="PHA03")
    ncpdp_id: Mapped[str | None] = mapped_column(String(7), unique=True, comment="PHA02")
    npi: Mapped[str | None] = mapped_column(String(10), unique=True, comment="PHA01")
    name: Mapped[str] = mapped_column(String(60), comment="PHA04")
    address1: Mapped[str | None] = mapped_column(String(30), comment="PHA05")
    address2: Mapped[str | None] = mapped_column(String(30), comment="PHA06")
    city: Mapped[str | None] = mapped_column(String(25), comment="PHA07")
    state: Mapped[str] = mapped_column(String(2), default="KY", comment="PHA08")
    zip: Mapped[str | None] = mapped_column(String(9), comment="PHA09")
    phone: Mapped[str | None] = mapped_column(String(10), comment="PHA10")
    chain: Mapped[str | None] = mapped_column(String(60))
    submitter_id: Mapped[str | None] = mapped_column(
        String(40), index=True, comment="pharmacies sharing it go in one file"
    )
    reg_key: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    mail_order: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), comment="ships to patients in other states"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def file_group(self) -> str:
        """What one ASAP file covers: the submitter of a chain, else the store."""
        return self.submitter_id or self.dea


class Claim(Base):
    """One NCPDP request as received, with the response sent for it."""

    __tablename__ = "claims"
    __table_args__ = (CheckConstraint(_in("route", ROUTES), name="route"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    transaction_code: Mapped[str] = mapped_column(String(2))
    bin: Mapped[str] = mapped_column(String(6))
    pcn: Mapped[str | None] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(String(13))
    service_provider_id: Mapped[str | None] = mapped_column(String(15))
    pharmacy_id: Mapped[int | None] = mapped_column(ForeignKey("pharmacies.id"))
    status: Mapped[str | None] = mapped_column(
        String(1), comment="response status of the first transaction: P D A R C ..."
    )
    reject_codes: Mapped[str | None] = mapped_column(String(200), comment="space separated")
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    request: Mapped[bytes] = mapped_column(LargeBinary)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)


class Fill(Base):
    """One captured dispensation, with every ASAP 4.1 field the state needs."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint(
            "pharmacy_id", "rx_number", "fill_number", "date_of_service", name="uq_fills_key"
        ),
        CheckConstraint(_in("state", FILL_STATES), name="state"),
        CheckConstraint(_in("route", FILL_ROUTES), name="route"),
        Index("ix_fills_report_queue", "needs_report", "pharmacy_id"),
        Index("ix_fills_date_of_service", "date_of_service"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pharmacy_id: Mapped[int] = mapped_column(ForeignKey("pharmacies.id"))
    rx_number: Mapped[str] = mapped_column(String(25), comment="DSP02")
    fill_number: Mapped[int] = mapped_column(Integer, comment="DSP06, 0 = new Rx")
    date_of_service: Mapped[dt.date] = mapped_column(Date, comment="DSP05 date filled")

    state: Mapped[str] = mapped_column(String(7), default="new")
    route: Mapped[str] = mapped_column(String(7))
    service_type: Mapped[str | None] = mapped_column(String(2), comment="147-U7, 05 mail order")
    version: Mapped[int] = mapped_column(Integer, default=1, comment="bumped on every change")
    needs_report: Mapped[bool] = mapped_column(Boolean, default=True)
    reported_status: Mapped[str | None] = mapped_column(
        String(2), comment="DSP01 last delivered: 00 01 02, NULL = never reported"
    )
    reported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"))
    updated_by_claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"))

    # Patient (PAT)
    patient_id_jurisdiction: Mapped[str | None] = mapped_column(String(2), comment="PAT01")
    patient_id_qualifier: Mapped[str | None] = mapped_column(String(2), comment="PAT02")
    patient_id: Mapped[str | None] = mapped_column(String(20), comment="PAT03")
    patient_last_name: Mapped[str | None] = mapped_column(String(50), comment="PAT07")
    patient_first_name: Mapped[str | None] = mapped_column(String(50), comment="PAT08")
    patient_middle_name: Mapped[str | None] = mapped_column(String(30), comment="PAT09")
    patient_address1: Mapped[str | None] = mapped_column(String(30), comment="PAT12")
    patient_address2: Mapped[str | None] = mapped_column(String(30), comment="PAT13")
    patient_city: Mapped[str | None] = mapped_column(String(20), comment="PAT14")
    patient_state: Mapped[str | None] = mapped_column(String(2), comment="PAT15")
    patient_zip: Mapped[str | None] = mapped_column(String(9), comment="PAT16")
    patient_phone: Mapped[str | None] = mapped_column(String(10), comment="PAT17")
    patient_dob: Mapped[dt.date | None] = mapped_column(Date, comment="PAT18")
    patient_gender: Mapped[str | None] = mapped_column(String(1), comment="PAT19 M F U")
    species: Mapped[str | None] = mapped_column(String(2), comment="PAT20 01 human 02 vet")
    patient_country: Mapped[str | None] = mapped_column(String(20), comment="PAT22")

    # Dispensing (DSP)
    date_written: Mapped[dt.date | None] = mapped_column(Date, comment="DSP03")
    refills_authorized: Mapped[int | None] = mapped_column(Integer, comment="DSP04")
    product_id_qualifier: Mapped[str] = mapped_column(String(2), default="01", comment="DSP07")
    ndc: Mapped[str] = mapped_column(String(15), comment="DSP08, 11-digit NDC")
    quantity: Mapped[Decimal | None] = mapped_column(Quantity, comment="DSP09")
    days_supply: Mapped[int | None] = mapped_column(Integer, comment="DSP10")
    dosage_units: Mapped[str | None] = mapped_column(String(2), comment="DSP11")
    rx_origin: Mapped[str | None] = mapped_column(String(2), comment="DSP12")
    partial_fill: Mapped[str | None] = mapped_column(String(2), comment="DSP13 01 yes 02 no")
    pharmacist_npi: Mapped[str | None] = mapped_column(String(10), comment="DSP14")
    payment_type: Mapped[str | None] = mapped_column(String(2), comment="DSP16, 01 private pay")
    schedule: Mapped[str | None] = mapped_column(
        String(4), comment="drug directory: CII..CV; NULL while unclassified"
    )
    # The NDC was not in the drug directory when the claim came: kept off every queue
    # (needs_report false) until `drugs import` of a newer directory classifies it.
    unclassified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    compound: Mapped[bool] = mapped_column(Boolean, default=False)

    # Prescriber (PRE)
    prescriber_npi: Mapped[str | None] = mapped_column(String(10), comment="PRE01")
    prescriber_dea: Mapped[str | None] = mapped_column(String(9), comment="PRE02")
    prescriber_last_name: Mapped[str | None] = mapped_column(String(50), comment="PRE05")
    prescriber_first_name: Mapped[str | None] = mapped_column(String(50), comment="PRE06")
    prescriber_phone: Mapped[str | None] = mapped_column(String(10))

    pharmacy: Mapped[Pharmacy] = relationship()
    created_by_claim: Mapped[Claim | None] = relationship(foreign_keys=[created_by_claim_id])
    updated_by_claim: Mapped[Claim | None] = relationship(foreign_keys=[updated_by_claim_id])
    ingredients: Mapped[list[FillIngredient]] = relationship(
        back_populates="fill",
        cascade="all, delete-orphan",
        order_by="FillIngredient.sequence",
        lazy="selectin",
    )

    @property
    def key(self) -> tuple[int, str, int, dt.date]:
        return (self.pharmacy_id, self.rx_number, self.fill_number, self.date_of_service)

    @property
    def reporting_status(self) -> str | None:
        """The DSP01 code the next file must carry for this fill, None for nothing.

        Voided before it was ever reported (or voided and that void delivered):
        nothing. Voided after a new or revised record went: 02. Otherwise 01 when
        the state already holds the record, else 00.
        """
        held = self.reported_status in (NEW_RECORD, REVISED_RECORD)
        if self.state == "voided":
            return VOID_RECORD if held else None
        return REVISED_RECORD if held else NEW_RECORD


class FillIngredient(Base):
    """One ingredient of a compound fill (ASAP CDI)."""

    __tablename__ = "fill_ingredients"
    __table_args__ = (UniqueConstraint("fill_id", "sequence", name="uq_fill_ingredients_seq"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    fill_id: Mapped[int] = mapped_column(ForeignKey("fills.id", ondelete="CASCADE"), index=True)
    sequence: Mapped[int] = mapped_column(Integer, comment="CDI01, from 1")
    product_id_qualifier: Mapped[str] = mapped_column(String(2), default="01", comment="CDI02")
    ndc: Mapped[str] = mapped_column(String(15), comment="CDI03")
    quantity: Mapped[Decimal] = mapped_column(Quantity, comment="CDI04")
    dosage_units: Mapped[str | None] = mapped_column(String(2), comment="CDI05")

    fill: Mapped[Fill] = relationship(back_populates="ingredients")


submission_pharmacies = Table(
    "submission_pharmacies",
    Base.metadata,
    Column("submission_id", ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True),
    Column("pharmacy_id", ForeignKey("pharmacies.id"), primary_key=True),
)


class Submission(Base):
    """One ASAP file and its delivery: written -> uploading -> uploaded -> processed."""

    __tablename__ = "submissions"
    __table_args__ = (
        CheckConstraint(_in("state", SUBMISSION_STATES), name="state"),
        CheckConstraint(_in("state_verdict", STATE_VERDICTS), name="state_verdict"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(200), unique=True)
    submitter_id: Mapped[str] = mapped_column(String(40), index=True)
    extract_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    zero_report: Mapped[bool] = mapped_column(Boolean, default=False)
    fill_date_min: Mapped[dt.date | None] = mapped_column(Date)
    fill_date_max: Mapped[dt.date | None] = mapped_column(Date)
    record_count: Mapped[int] = mapped_column(Integer, default=0)
    valid_record_count: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(9), default="written", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Ours, not the state's: the shared validator's verdict when the file was written
    # ("checked here"), with `processed_at` its time and `collector_answer` its errors.
    collector_status: Mapped[str | None] = mapped_column(String(40), comment="Accept, File Failed")
    collector_answer: Mapped[str | None] = mapped_column(Text)
    # The state's: what its collector reported, recorded by an operator (NULL = unknown).
    state_verdict: Mapped[str | None] = mapped_column(String(10), comment="accepted failed ...")
    state_recorded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state_note: Mapped[str | None] = mapped_column(Text, comment="the collector's words, if any")
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(String(500))
    # Fixed when delivery starts, so a re-run looks for (and packs as) the same name.
    pmp_state: Mapped[str | None] = mapped_column(String(2), comment="NULL: the home state's")
    remote_path: Mapped[str | None] = mapped_column(
        String(600), comment="folder/NAME.dat[.pgp] or NAME.zip as sent; NULL until delivery starts"
    )

    pharmacies: Mapped[list[Pharmacy]] = relationship(secondary=submission_pharmacies)
    records: Mapped[list[SubmissionRecord]] = relationship(
        back_populates="submission", cascade="all, delete-orphan", lazy="raise_on_sql"
    )


class PharmacyRegistration(Base):
    """A pharmacy's registration with another state's PMP (its home state's is on the
    pharmacy): the submitter ID and RegKey that state knows it by."""

    __tablename__ = "pharmacy_registrations"
    __table_args__ = (UniqueConstraint("pharmacy_id", "state", name="uq_pharmacy_registrations"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pharmacy_id: Mapped[int] = mapped_column(ForeignKey("pharmacies.id"))
    state: Mapped[str] = mapped_column(String(2), comment="the PMP's state")
    submitter_id: Mapped[str | None] = mapped_column(String(40))
    reg_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FillReport(Base):
    """What another state's PMP holds of a fill (a mail-order fill to its resident):
    one row per fill and state, so a fill never goes twice to one state. The home
    state's report lives on the fill itself."""

    __tablename__ = "fill_reports"
    __table_args__ = (UniqueConstraint("fill_id", "state", name="uq_fill_reports"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    fill_id: Mapped[int] = mapped_column(ForeignKey("fills.id"))
    state: Mapped[str] = mapped_column(String(2), comment="another state's PMP")
    reported_status: Mapped[str] = mapped_column(String(2), comment="DSP01 delivered")
    reported_version: Mapped[int] = mapped_column(Integer)
    reported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))


class SubmissionRecord(Base):
    """Which fill a file carries, as which DSP01 status and fill version.

    Marking reported after upload reads these rows, so a fill revised while
    its file was in flight stays queued for the next file.
    """

    __tablename__ = "submission_records"
    __table_args__ = (UniqueConstraint("submission_id", "fill_id", name="uq_submission_records"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    fill_id: Mapped[int] = mapped_column(ForeignKey("fills.id"), index=True)
    reporting_status: Mapped[str] = mapped_column(String(2), comment="DSP01 sent")
    fill_version: Mapped[int] = mapped_column(Integer)

    submission: Mapped[Submission] = relationship(back_populates="records")


class StateFileCount(Base):
    """One pharmacy's line of the collector's file status report (PMP Clearinghouse shape)."""

    __tablename__ = "state_file_counts"
    __table_args__ = (
        UniqueConstraint("submission_id", "pharmacy_id", name="uq_state_file_counts"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    pharmacy_id: Mapped[int] = mapped_column(ForeignKey("pharmacies.id"))
    total: Mapped[int] = mapped_column(Integer)
    duplicate: Mapped[int] = mapped_column(Integer)
    in_process: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    warnings: Mapped[int] = mapped_column(Integer)
    imported: Mapped[int] = mapped_column(Integer)
    voided: Mapped[int] = mapped_column(Integer)
    voids_not_found: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordReject(Base):
    """A record held back (by our validator or the collector): which fill, which element.

    `code` says whose: the validator's severity, or STATE_REJECT for the collector's.
    """

    __tablename__ = "record_rejects"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submissions.id"), index=True)
    fill_id: Mapped[int | None] = mapped_column(ForeignKey("fills.id"), index=True)
    segment: Mapped[str | None] = mapped_column(String(3))
    element: Mapped[str | None] = mapped_column(String(5))
    code: Mapped[str | None] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None
