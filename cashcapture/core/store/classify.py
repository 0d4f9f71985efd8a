"""Fills captured unclassified (their NDC unknown to the drug directory), classified
again by a newer directory.

A fill the directory now schedules joins the report queue as it is: its date
filled, not today, decides whether it is late. A fill now known not to be
controlled is deleted, as if it had never been captured (the store keeps
controlled fills only; its claim row stays, so a retransmission is still
answered the same) - unless a state already saw it (a reported fill rebilled
with a new NDC): then it is voided, so a state holding its record gets the 02. A
fill still unknown waits. Each change applies only to the fill version it read
(the counter writes meanwhile), so it is safe to re-run and to run beside `serve`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from cashcapture.core.drugs import UNKNOWN, Directory, most_controlled
from cashcapture.core.store.models import (
    Fill,
    FillIngredient,
    FillReport,
    Pharmacy,
    RecordReject,
    SubmissionRecord,
)
from cashcapture.core.store.repo import void_values
from cashcapture.core.store.types import utcnow

DirectoryFor = Callable[[str], Directory]  # a pharmacy's home state -> its directory


@dataclass
class Reclassified:
    """What one pass changed: fills now queued (id, date filled), fills removed, fills
    still waiting."""

    reportable: list[tuple[int, dt.date]] = field(default_factory=list)
    not_controlled: int = 0
    still_unknown: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.reportable or self.not_controlled)


@dataclass(frozen=True)
class UnknownNdc:
    """An NDC the directory does not hold, as the unclassified fills carry it."""

    ndc: str
    fills: int
    pharmacies: int
    first_filled: dt.date
    last_filled: dt.date


@dataclass(frozen=True)
class _Waiting:
    id: int
    pharmacy_id: int
    home: str  # the pharmacy's state: whose directory (and additions) classify it
    filled: dt.date
    state: str
    version: int
    reported_status: str | None
    ndcs: list[str]  # the product's NDC, or a compound's ingredients'


def _unclassified(session: Session) -> list[_Waiting]:
    rows = session.execute(
        select(
            Fill.id,
            Fill.pharmacy_id,
            Pharmacy.state.label("home"),
            Fill.date_of_service.label("filled"),
            Fill.state,
            Fill.version,
            Fill.reported_status,
            Fill.ndc,
            Fill.compound,
        )
        .join(Pharmacy, Pharmacy.id == Fill.pharmacy_id)
        .where(Fill.unclassified.is_(True))
        .order_by(Fill.id)
    ).all()
    parts: dict[int, list[str]] = defaultdict(list)
    compounds = [r.id for r in rows if r.compound]
    for start in range(0, len(compounds), 500):
        stmt = (
            select(FillIngredient.fill_id, FillIngredient.ndc)
            .where(FillIngredient.fill_id.in_(compounds[start : start + 500]))
            .order_by(FillIngredient.fill_id, FillIngredient.sequence)
        )
        for fill_id, ndc in session.execute(stmt):
            parts[fill_id].append(ndc)
    return [
        _Waiting(
            r.id,
            r.pharmacy_id,
            r.home,
            r.filled,
            r.state,
            r.version,
            r.reported_status,
            parts[r.id] if r.compound else [r.ndc],
        )
        for r in rows
    ]


def reclassify(session: Session, directory_for: DirectoryFor) -> Reclassified:
    """Classify every unclassified fill by its pharmacy's state's directory; the caller
    commits."""
    out = Reclassified()
    for fill in _unclassified(session):
        schedule = most_controlled(map(directory_for(fill.home).schedule_of, fill.ndcs))
        if schedule == UNKNOWN:
            out.still_unknown += 1
        elif schedule is not None:
            # a void keeps what it owes (a 02 when a state holds the record, else nothing)
            owes = fill.state == "voided"
            values = {"schedule": schedule, "unclassified": False}
            if _apply(session, fill, values if owes else {**values, "needs_report": True}):
                if not owes:
                    out.reportable.append((fill.id, fill.filled))
        elif _remove(session, fill) or _void(session, fill):
            out.not_controlled += 1
    return out


def _current(fill: _Waiting) -> ColumnElement[bool]:
    """The fill as this pass read it: a rebill or reversal since leaves it alone."""
    return and_(Fill.id == fill.id, Fill.version == fill.version, Fill.unclassified.is_(True))


def _apply(session: Session, fill: _Waiting, values: dict) -> bool:
    stmt = update(Fill).where(_current(fill)).values(**values)
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _remove(session: Session, fill: _Waiting) -> bool:
    """Delete a fill no state has seen (no file carried it, no answer names it); its
    ingredients go with it (ON DELETE CASCADE)."""
    seen = or_(
        exists().where(SubmissionRecord.fill_id == Fill.id),
        exists().where(FillReport.fill_id == Fill.id),
        exists().where(RecordReject.fill_id == Fill.id),
    )
    stmt = delete(Fill).where(_current(fill), Fill.reported_status.is_(None), ~seen)
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _void(session: Session, fill: _Waiting) -> bool:
    """A fill a state has seen, now known not to be controlled: voided, so a state that
    holds its record gets the 02 (home; other states' copies by the version bump)."""
    values: dict = {"unclassified": False}
    if fill.state != "voided":
        values.update(void_values(fill.state, fill.version, fill.reported_status, utcnow()))
    return _apply(session, fill, values)


def unknown_ndcs(session: Session, directory_for: DirectoryFor) -> list[UnknownNdc]:
    """The NDCs unclassified fills carry that the directory still does not hold, most
    fills first: what to look up (no patient data, only counts and dates)."""
    seen: dict[str, list[_Waiting]] = defaultdict(list)
    for fill in _unclassified(session):
        schedule_of = directory_for(fill.home).schedule_of
        for ndc in dict.fromkeys(fill.ndcs):
            if schedule_of(ndc) == UNKNOWN:
                seen[ndc].append(fill)
    found = [
        UnknownNdc(
            ndc,
            len(fills),
            len({f.pharmacy_id for f in fills}),
            min(f.filled for f in fills),
            max(f.filled for f in fills),
        )
        for ndc, fills in seen.items()
    ]
    return sorted(found, key=lambda u: (-u.fills, u.ndc))


def unclassified_count(session: Session) -> int:
    """Fills waiting for their NDC to be classified."""
    stmt = select(func.count()).select_from(Fill).where(Fill.unclassified.is_(True))
    return int(session.scalar(stmt) or 0)
