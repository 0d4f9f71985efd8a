"""Fills that pass the KY validator, and the pieces the extract tests share."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from _store_helpers import add_pharmacy, fill_fields, insert_fill
from sqlalchemy.orm import Session

from cashcapture.core import drugs
from cashcapture.core.pmp.validate import Report, validate
from cashcapture.core.store import Fill, Pharmacy, make_engine, session_factory
from extract.settings import ExtractSettings, Settings, SftpSettings

TODAY = dt.date.today()


def good_fill(session: Session, pharmacy_id: int, rx: str, *, ingredients=(), **kw: Any) -> Fill:
    """A captured cash fill whose every field passes the KY rules."""
    kw.setdefault("patient_id_jurisdiction", "KY")
    kw.setdefault("date_of_service", TODAY - dt.timedelta(days=1))
    fill = insert_fill(session, fill_fields(pharmacy_id, rx, **kw), ingredients=ingredients)
    session.flush()
    return fill


COMPOUND = [
    {"sequence": 1, "ndc": "00406052362", "quantity": Decimal("10")},
    {"sequence": 2, "ndc": "00406052362", "quantity": Decimal("5.5")},
]


def pharmacies(session: Session) -> dict[str, int]:
    """An independent store, a two-store chain and a store with nothing to report."""
    ids = {
        "solo": add_pharmacy(session, "FP1234563", reg_key="9004").id,
        "chain1": add_pharmacy(
            session, "BC7710420", name="Chain 101", submitter_id="CWDRUGS", reg_key="77"
        ).id,
        "chain2": add_pharmacy(
            session, "BC7710432", name="Chain 102", submitter_id="CWDRUGS", reg_key="77"
        ).id,
        "quiet": add_pharmacy(session, "BB4827133", name="Quiet", reg_key="5").id,
    }
    # registered before the day being extracted, so they owe a zero report
    for pid in ids.values():
        session.get_one(Pharmacy, pid).created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    return ids


def settings(tmp_path, sftp: SftpSettings | None = None, **extract: Any) -> Settings:
    extract.setdefault("timezone", "UTC")
    return Settings(
        extract=ExtractSettings(**extract), sftp=sftp or SftpSettings(), base_dir=tmp_path
    )


def check_file(data: bytes) -> Report:
    """The shared validator, as the collector would run it on the delivered file."""
    return validate(data, drug_list=drugs.load("KY"), today=TODAY)


@pytest.fixture
def sessions(migrated_db_url):
    engine = make_engine(migrated_db_url)
    yield session_factory(engine)
    engine.dispose()
