"""Sample rows for store tests (fictitious patient and prescriber)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from cashcapture.core.store import GroupCommitter, Pharmacy, claim_hash, insert_fill, record_claim


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
