"""Repository functions: the few reads and writes the adapter and the extract share.

Pure SQLAlchemy on a caller's Session; none of them commits. The adapter runs
one capture (claim + fill changes) as one unit of work, normally through the
`GroupCommitter`, so a capture commits whole or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import bindparam, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import (
    Claim,
    Fill,
    FillIngredient,
    Pharmacy,
    Submission,
    SubmissionRecord,
)
from .types import utcnow

#: Names of the unique fill key as the two databases report a violation of it.
_FILL_KEY_MARKERS = ("uq_fills_key", "fills.pharmacy_id, fills.rx_number")
IN_FLIGHT = ("written", "uploading")
#: Session.info flag: a duplicate will fail the commit and the batch is re-run checked.
OPTIMISTIC = "cashcapture.optimistic"


class DuplicateFill(Exception):
    """A fill with this pharmacy + Rx + fill number + date of service exists."""

    def __init__(self, key: tuple, existing_id: int | None = None) -> None:
        super().__init__(f"duplicate fill: pharmacy {key[0]} rx {key[1]} fill {key[2]} {key[3]}")
        self.key = key
        self.existing_id = existing_id


def is_duplicate_fill_error(exc: BaseException) -> bool:
    """True when ``exc`` is the database refusing a second fill with the same key."""
    return isinstance(exc, IntegrityError) and any(m in str(exc.orig) for m in _FILL_KEY_MARKERS)


def claim_hash(content: bytes) -> str:
    """Content hash used to recognise an identical retransmission."""
    return hashlib.sha256(content).hexdigest()


# --- claims -------------------------------------------------------------------


def record_claim(
    session: Session,
    *,
    request: bytes,
    transaction_code: str,
    bin: str,
    route: str,
    pcn: str | None = None,
    service_provider_id: str | None = None,
    pharmacy: Pharmacy | None = None,
    content_hash: str | None = None,
    received_at: dt.datetime | None = None,
) -> Claim:
    """Add the claim as received (not flushed); answer it with `answer_claim`."""
    claim = Claim(
        request=request,
        transaction_code=transaction_code,
        bin=bin,
        pcn=pcn,
        route=route,
        service_provider_id=service_provider_id,
        content_hash=content_hash if content_hash is not None else claim_hash(request),
        received_at=received_at or utcnow(),
    )
    if pharmacy is not None:
        claim.pharmacy_id = pharmacy.id
    session.add(claim)
    return claim


def answer_claim(
    session: Session,
    claim: Claim,
    *,
    response: bytes,
    status: str,
    reject_codes: Iterable[str] = (),
    answered_at: dt.datetime | None = None,
) -> Claim:
    """Store the response bytes and status sent for ``claim``."""
    claim.response = response
    claim.status = status
    claim.reject_codes = " ".join(reject_codes) or None
    claim.answered_at = answered_at or utcnow()
    return claim


def find_claim_by_hash(session: Session, content_hash: str) -> Claim | None:
    """The latest answered claim with this content hash (a retransmission's original)."""
    stmt = (
        select(Claim)
        .where(Claim.content_hash == content_hash, Claim.response.is_not(None))
        .order_by(Claim.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


# --- pharmacies ---------------------------------------------------------------


def find_pharmacy(session: Session, provider_id: str) -> Pharmacy | None:
    """The pharmacy whose NCPDP ID, NPI or DEA is ``provider_id`` (the claim's 201-B1)."""
    provider_id = provider_id.strip()
    stmt = select(Pharmacy).where(
        or_(
            Pharmacy.ncpdp_id == provider_id,
            Pharmacy.npi == provider_id,
            Pharmacy.dea == provider_id,
        )
    )
    return session.scalars(stmt).first()


# --- fills --------------------------------------------------------------------


def find_fill(
    session: Session,
    pharmacy_id: int,
    rx_number: str,
    fill_number: int,
    date_of_service: dt.date,
) -> Fill | None:
    """The fill a B1 duplicate, B2 or B3 matches, voided ones included."""
    params = {"p": pharmacy_id, "rx": rx_number, "n": fill_number, "d": date_of_service}
    return session.scalars(_FIND_FILL, params).first()


# Built once: this look-up runs for every captured claim.
_FIND_FILL = select(Fill).where(
    Fill.pharmacy_id == bindparam("p"),
    Fill.rx_number == bindparam("rx"),
    Fill.fill_number == bindparam("n"),
    Fill.date_of_service == bindparam("d"),
)


def _ingredients(rows: Iterable[Mapping[str, Any]]) -> list[FillIngredient]:
    return [FillIngredient(**row) for row in rows]


def insert_fill(
    session: Session,
    fields: Mapping[str, Any],
    *,
    claim: Claim | None = None,
    ingredients: Iterable[Mapping[str, Any]] = (),
) -> Fill:
    """Add a new fill (not flushed). Raises `DuplicateFill` when its key exists.

    The check here sees this session; a concurrent writer that wins the race
    makes the flush or commit fail on the unique key instead (see
    `is_duplicate_fill_error`; the group committer retries the unit, which then
    gets `DuplicateFill`). In the committer's optimistic first pass
    (``session.info[OPTIMISTIC]``) the check is left to the unique key alone.
    """
    fill = Fill(**fields)
    if not session.info.get(OPTIMISTIC):
        existing = find_fill(
            session, fill.pharmacy_id, fill.rx_number, fill.fill_number, fill.date_of_service
        )
        if existing is not None:
            raise DuplicateFill(existing.key, existing.id)
    now = utcnow()
    fill.state, fill.version, fill.needs_report = "new", 1, True
    fill.created_at = fill.updated_at = now
    fill.created_by_claim = claim
    fill.ingredients = _ingredients(ingredients)
    fill.compound = fill.compound or bool(fill.ingredients)
    session.add(fill)
    return fill


def revise_fill(
    session: Session,
    fill: Fill,
    fields: Mapping[str, Any],
    *,
    claim: Claim | None = None,
    ingredients: Iterable[Mapping[str, Any]] | None = None,
) -> Fill:
    """Apply a rebill or correction (also revives a voided fill); queue it for report."""
    key_fields = {"pharmacy_id", "rx_number", "fill_number", "date_of_service"}
    for name, value in fields.items():
        if name in key_fields and value != getattr(fill, name):
            raise ValueError(f"revise_fill cannot change the fill key ({name})")
        if not hasattr(Fill, name):
            raise TypeError(f"unknown fill field {name!r}")
        setattr(fill, name, value)
    if ingredients is not None:
        fill.ingredients = _ingredients(ingredients)
        fill.compound = bool(fill.ingredients)
    fill.state = "revised"
    _changed(fill, claim)
    fill.needs_report = True
    return fill


def void_fill(session: Session, fill: Fill, *, claim: Claim | None = None) -> Fill:
    """Void a fill (a B2). Queued for a 02 record only if the state holds it."""
    fill.state = "voided"
    _changed(fill, claim)
    fill.needs_report = fill.reporting_status is not None
    return fill


def _changed(fill: Fill, claim: Claim | None) -> None:
    fill.version = (fill.version or 1) + 1
    fill.updated_at = utcnow()
    if claim is not None:
        fill.updated_by_claim = claim


# --- extract side -------------------------------------------------------------


def fills_to_report(
    session: Session,
    pharmacy_ids: Iterable[int],
    *,
    exclude_in_flight: bool = True,
    yield_per: int = 1000,
) -> Iterator[Fill]:
    """Stream the fills queued for a report (new, revised, void), in file order.

    Fills already carried by a file not yet delivered are left out, so a re-run
    of the extract does not put them in a second file.
    """
    stmt = select(Fill).where(Fill.needs_report.is_(True), Fill.pharmacy_id.in_(list(pharmacy_ids)))
    if exclude_in_flight:
        in_flight = (
            select(SubmissionRecord.id)
            .join(Submission)
            .where(SubmissionRecord.fill_id == Fill.id, Submission.state.in_(IN_FLIGHT))
        )
        stmt = stmt.where(~exists(in_flight))
    stmt = stmt.order_by(Fill.pharmacy_id, Fill.date_of_service, Fill.id)
    yield from session.scalars(stmt.execution_options(yield_per=yield_per))


def add_record(session: Session, submission: Submission, fill: Fill) -> SubmissionRecord:
    """Note that ``submission`` carries ``fill`` as its current reporting status."""
    status = fill.reporting_status
    if status is None:
        raise ValueError(f"fill {fill.id} has nothing to report")
    record = SubmissionRecord(
        submission=submission, fill_id=fill.id, reporting_status=status, fill_version=fill.version
    )
    session.add(record)
    return record


def mark_fills_reported(
    session: Session, submission: Submission, at: dt.datetime | None = None
) -> int:
    """After the file is on the server: record what the state now holds. Returns the count.

    A fill changed since the file was written keeps ``needs_report`` and goes
    out again (as 01 or 02) in the next file.
    """
    at = at or utcnow()
    stmt = (
        select(SubmissionRecord, Fill)
        .join(Fill, Fill.id == SubmissionRecord.fill_id)
        .where(SubmissionRecord.submission_id == submission.id)
    )
    count = 0
    for record, fill in session.execute(stmt):
        fill.reported_status = record.reporting_status
        fill.reported_at = at
        fill.last_submission_id = submission.id
        if fill.version == record.fill_version:
            fill.needs_report = False
        count += 1
    return count
