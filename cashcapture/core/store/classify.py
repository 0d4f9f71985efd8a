"""Fills captured unclassified (their NDC unknown to the drug directory), classified
again by a newer directory.

A fill the directory now schedules joins the report queue as it is: its date
filled, not today, decides whether it is late. A fill now known not to be
controlled is deleted, as if it had never been captured (the store keeps
controlled fills only; its claim row stays, so a retransmission is still
answered the same). A fill still unknown waits. Safe to re-run: it only ever
reads fills that are still unclassified.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cashcapture.core.drugs import UNKNOWN, Directory, most_controlled
from cashcapture.core.store.models import Fill, FillIngredient, Pharmacy

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
    ndcs: list[str]  # the product's NDC, or a compound's ingredients'


def _unclassified(session: Session) -> list[_Waiting]:
    rows = session.execute(
        select(
            Fill.id,
            Fill.pharmacy_id,
            Pharmacy.state,
            Fill.date_of_service,
            Fill.state,
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
        _Waiting(r[0], r[1], r[2], r[3], r[4], parts[r[0]] if r.compound else [r.ndc]) for r in rows
    ]


def reclassify(session: Session, directory_for: DirectoryFor) -> Reclassified:
    """Classify every unclassified fill by its pharmacy's state's directory; the caller
    commits."""
    out = Reclassified()
    removed: list[int] = []
    for fill in _unclassified(session):
        schedule = most_controlled(map(directory_for(fill.home).schedule_of, fill.ndcs))
        if schedule == UNKNOWN:
            out.still_unknown += 1
        elif schedule is None:
            removed.append(fill.id)
        else:
            # a reversal never reported owes nothing; read in the UPDATE itself, as the
            # counter may void the fill between this pass's read and its write
            result = session.execute(
                update(Fill)
                .where(Fill.id == fill.id, Fill.unclassified.is_(True))
                .values(schedule=schedule, unclassified=False, needs_report=Fill.state != "voided")
                .execution_options(synchronize_session=False)
            )
            if result.rowcount and fill.state != "voided":  # type: ignore[attr-defined]
                out.reportable.append((fill.id, fill.filled))
    for start in range(0, len(removed), 500):
        # still unclassified when deleted (a rebill may have classified it meanwhile); the
        # ingredients go with their fill (ON DELETE CASCADE)
        ids = removed[start : start + 500]
        result = session.execute(
            delete(Fill)
            .where(Fill.id.in_(ids), Fill.unclassified.is_(True))
            .execution_options(synchronize_session=False)
        )
        out.not_controlled += result.rowcount  # type: ignore[attr-defined]
    return out


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
