"""Sample rows for store tests (fictitious patient and prescriber), and single-change writers.

The writers (`record_claim`, `answer_claim`, `insert_fill`, `revise_fill`,
`void_fill`) build one change with the ORM for tests and benchmarks that set
the store up row by row. Production writes only through `repo.Writes`; both
apply the same rules (`repo.new_fill_values`, `revision_values`, `void_values`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cashcapture.core.store import (
    Claim,
    DuplicateFill,
    Fill,
    FillIngredient,
    GroupCommitter,
    Pharmacy,
    claim_hash,
)
from cashcapture.core.store.repo import (
    OPTIMISTIC,
    new_fill_values,
    revision_values,
    void_values,
)
from cashcapture.core.store.types import utcnow


def add_pharmacy(session: Session, dea: str = "FP1234563", **kw: Any) -> Pharmacy:
    pharmacy = Pharmacy(dea=dea, name=kw.pop("name", "Bluegrass Pharmacy"), **kw)
    session.add(pharmacy)
    session.flush()
    return pharmacy


def fill_fields(pharmacy_id: int, rx: str = "1000001", fill_number: int = 0, **kw: Any) -> dict:
    fields = dict(
        pharmacy_id=pharmacy_id,
        rx_number=rx,
        fill_number=fill_number,
        date_of_service=dt.date(2024, 3, 4),
        route="cash",
        payment_type="01",
        patient_id_qualifier="06",
        patient_id="K12345678",
        patient_last_name="DOE",
        patient_first_name="JANE",
        patient_address1="12 MAIN ST",
        patient_city="FRANKFORT",
        patient_state="KY",
        patient_zip="40601",
        patient_dob=dt.date(1970, 1, 2),
        patient_gender="F",
        date_written=dt.date(2024, 3, 1),
        refills_authorized=0,
        ndc="00406052362",
        quantity=Decimal("30"),
        days_supply=15,
        prescriber_dea="AB1234563",
        schedule="CII",
    )
    fields.update(kw)
    return fields


def capture(session: Session, pharmacy_id: int, rx: str = "1000001", **kw: Any):
    """One capture as the adapter does it: the claim, then the fill it creates."""
    request = f"B1 {pharmacy_id} {rx} {kw}".encode()
    claim = record_claim(
        session,
        request=request,
        transaction_code="B1",
        bin="999999",
        route="cash",
        content_hash=claim_hash(request),
    )
    return insert_fill(session, fill_fields(pharmacy_id, rx, **kw), claim=claim)


def hold_committer(committer: GroupCommitter) -> threading.Event:
    """Block the committer thread so the next submissions queue into one batch; set to go on."""
    gate, running = threading.Event(), threading.Event()
    committer.submit(lambda session: (running.set(), gate.wait(30)))
    assert running.wait(30)
    return gate


# --- single-change writers (the ORM form; production uses repo.Writes) ----------


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
    ingredients = list(ingredients)
    for name, value in new_fill_values(fields, ingredients, utcnow()).items():
        setattr(fill, name, value)
    fill.created_by_claim = claim
    fill.ingredients = _ingredients(ingredients)
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
    if ingredients is not None:
        ingredients = list(ingredients)
        fill.ingredients = _ingredients(ingredients)
    values = revision_values(fill.key, fill.state, fill.version, fields, ingredients, utcnow())
    for name, value in values.items():
        setattr(fill, name, value)
    if claim is not None:
        fill.updated_by_claim = claim
    return fill


def void_fill(session: Session, fill: Fill, *, claim: Claim | None = None) -> Fill:
    """Void a fill (a B2). Queued for a 02 record only if the state holds it."""
    for name, value in void_values(
        fill.state, fill.version, fill.reported_status, utcnow()
    ).items():
        setattr(fill, name, value)
    if claim is not None:
        fill.updated_by_claim = claim
    return fill
