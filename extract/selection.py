"""Which day, which pharmacies, which fills: the extract's reads from the store.

The day is yesterday in the configured time zone; a fill belongs to it when its
last change happened before the day's end and it still needs a report. Fills
carried by a file written but not yet delivered are never selected again, so a
re-run never puts a fill in two files. Everything here reads, except the one
clean-up of rejects that became moot (`resolve_stale_rejects`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import String, and_, case, cast, exists, func, or_, select, true, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from cashcapture.core.pmp import fillrecord
from cashcapture.core.pmp import records as asap
from cashcapture.core.store.models import (
    MAIL_ORDER,
    STATE_REJECT,
    VOID_RECORD,
    Fill,
    FillIngredient,
    FillReport,
    Pharmacy,
    PharmacyRegistration,
    RecordReject,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)
from cashcapture.core.store.repo import IN_FLIGHT
from cashcapture.core.store.sql import table_of
from cashcapture.core.store.types import utcnow
from extract.settings import Settings
from extract.submit import writing

YIELD_PER = 2000  # a pharmacy queueing more fills than this is streamed


# --- the day -------------------------------------------------------------------


def default_day(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the configured time zone."""
    now = now or utcnow()
    return now.astimezone(settings.extract.zone()).date() - dt.timedelta(days=1)


def day_end(settings: Settings, day: dt.date) -> dt.datetime:
    """The first instant after `day` in the configured zone, as aware UTC."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), settings.extract.zone())
    return local.astimezone(dt.UTC)


# --- fill columns -> ASAP values ----------------------------------------------------

_FILL = table_of(Fill)
_C = _FILL.c


def _txt(column: Any) -> Any:
    """The column as the text an ASAP element holds ('' for NULL), computed in SQL."""
    if isinstance(column.type, String):
        return func.coalesce(column, "")
    return func.coalesce(cast(column, String), "")


def _column(name: str) -> Any:
    """A Fill column as the extract selects it: typed, or as text (see core fillrecord)."""
    column = _C[name]
    return column if name in fillrecord.TYPED else _txt(column)


# ASAP value attribute <- Fill column: the tables of core.pmp.fillrecord, which the
# counter shares, as SQL. Dates and quantities stay typed, everything else is text.
PATIENT_MAP = tuple((n, _column(c)) for n, c in fillrecord.PATIENT)
DISPENSATION_MAP = tuple((n, _column(c)) for n, c in fillrecord.DISPENSATION)
PRESCRIBER_MAP = tuple((n, _column(c)) for n, c in fillrecord.PRESCRIBER)
# A selected row: bookkeeping columns first, then the three value blocks, in this order.
_EARLIER = _FILL.alias("earlier")
# Which partial fill of its prescription a partial fill is (4.2's DSP13 counts them): the
# partial fills of its pharmacy, Rx and refill number up to it, by date filled, leaving
# out reversed and unclassified ones (NULL for a fill that is no partial). The unique fill
# key's index serves the count.
PARTIAL_NUMBER = case(
    (
        _C.partial_fill == fillrecord.PARTIAL,
        select(func.count())
        .where(
            _EARLIER.c.pharmacy_id == _C.pharmacy_id,
            _EARLIER.c.rx_number == _C.rx_number,
            _EARLIER.c.fill_number == _C.fill_number,
            _EARLIER.c.partial_fill == fillrecord.PARTIAL,
            or_(
                _EARLIER.c.date_of_service < _C.date_of_service,
                and_(_EARLIER.c.date_of_service == _C.date_of_service, _EARLIER.c.id <= _C.id),
            ),
            # earlier partials that were dispensed and reported: not reversed, not waiting
            or_(
                _EARLIER.c.id == _C.id,
                and_(_EARLIER.c.state != "voided", _EARLIER.c.unclassified.is_(False)),
            ),
        )
        .scalar_subquery(),
    ),
    else_=None,
)
HEAD = (
    _C.id,
    _C.version,
    _C.state,
    _C.reported_status,
    _C.compound,
    _C.fill_number,
    PARTIAL_NUMBER.label("partial_number"),
)
PAT = slice(len(HEAD), len(HEAD) + len(PATIENT_MAP))
DSP = slice(PAT.stop, PAT.stop + len(DISPENSATION_MAP))
PRE = slice(DSP.stop, DSP.stop + len(PRESCRIBER_MAP))
PAT_NAMES, DSP_NAMES, PRE_NAMES = fillrecord.PAT_NAMES, fillrecord.DSP_NAMES, fillrecord.PRE_NAMES
DATE_FILLED = DSP.start + DSP_NAMES.index("date_filled")
_SELECT = [
    *HEAD,
    *(col.label(f"pat_{n}") for n, col in PATIENT_MAP),
    *(col.label(f"dsp_{n}") for n, col in DISPENSATION_MAP),
    *(col.label(f"pre_{n}") for n, col in PRESCRIBER_MAP),
]


# File order: by patient (PAT once per patient), then fill.
ROW_ORDER = (_C.patient_last_name, _C.patient_first_name, _C.patient_dob, _C.patient_id, _C.id)

OpenRejects = dict[int, set[tuple[Any, ...]]]  # fill -> {(segment, element, reason)}


def _owed_to(held: Any) -> Any:
    """A fill another state is owed, given what it holds (`held`, a FillReport outer-joined
    for that state): never sent and not reversed, or changed since it was sent; never
    a fill still unclassified (its NDC unknown to the drug directory)."""
    return and_(
        _C.unclassified.is_(False),
        or_(
            and_(held.id.is_(None), _C.state != "voided"),
            and_(
                held.reported_version < _C.version,
                or_(_C.state != "voided", held.reported_status != VOID_RECORD),
            ),
        ),
    )


def mail_order_owed(session: Session, state: str) -> list[tuple[dt.date, int]]:
    """(date filled, fills) that `state` is owed from out-of-state pharmacies registered
    with it (mail order to its residents): what its late count adds."""
    held = aliased(FillReport)
    stmt = (
        select(_C.date_of_service, func.count())
        .select_from(_FILL)
        .join(Pharmacy, Pharmacy.id == _C.pharmacy_id)
        .join(
            PharmacyRegistration,
            and_(
                PharmacyRegistration.pharmacy_id == Pharmacy.id,
                PharmacyRegistration.state == state,
            ),
        )
        .outerjoin(held, and_(held.fill_id == _C.id, held.state == state))
        .where(
            Pharmacy.state != state,
            _C.patient_state == state,
            or_(Pharmacy.mail_order.is_(True), _C.service_type == MAIL_ORDER),
            _owed_to(held),
        )
        .group_by(_C.date_of_service)
    )
    return [(filled, int(n)) for filled, n in session.execute(stmt)]


def unserved(session: Session, states: list[str]) -> list[tuple[str, str, int]]:
    """Pharmacies whose home state no configured profile reports to, with fills queued:
    (DEA, state, fills) - never reported until their state is added, so said every run."""
    stmt = (
        select(Pharmacy.dea, Pharmacy.state, func.count(Fill.id))
        .join(Fill, Fill.pharmacy_id == Pharmacy.id)
        .where(Fill.needs_report.is_(True), Pharmacy.state.not_in(states))
        .group_by(Pharmacy.dea, Pharmacy.state)
        .order_by(Pharmacy.state, Pharmacy.dea)
    )
    return [(dea, state, int(n)) for dea, state, n in session.execute(stmt)]


class Selection:
    """The store's answers for one run over one day, each read once and kept.

    Queue counts, in-flight fills and open rejects are read on first use for
    all pharmacies at once: per-pharmacy queries would repeat that work
    thousands of times on a national day.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        day: dt.date,
        now: dt.datetime,
        before_id: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.day = day
        self.now = now
        self.cutoff = day_end(settings, day)
        self.before_id = before_id  # submissions up to this id predate the run
        self.state = settings.extract.report_state  # the PMP this run reports to
        self._queue: dict[int, int] | None = None  # pharmacy -> fills queued
        self._flying: set[int] | None = None  # fills in files not yet delivered
        self._rejects: dict[int, OpenRejects] | None = None  # pharmacy -> fill -> open

    def pharmacies(self, session: Session) -> list[Pharmacy]:
        """The state's own pharmacies, active or with fills still queued, by id."""
        queued = exists().where(Fill.pharmacy_id == Pharmacy.id, Fill.needs_report.is_(True))
        stmt = (
            select(Pharmacy)
            .where(Pharmacy.state == self.state, or_(Pharmacy.active.is_(True), queued))
            .order_by(Pharmacy.id)
        )
        return list(session.scalars(stmt))

    def registered_here(self, session: Session) -> list[tuple[Pharmacy, PharmacyRegistration]]:
        """Pharmacies of other states registered with this state's PMP (mail order into
        it), with the registration that names them to it, by id."""
        stmt = (
            select(Pharmacy, PharmacyRegistration)
            .join(PharmacyRegistration, PharmacyRegistration.pharmacy_id == Pharmacy.id)
            .where(PharmacyRegistration.state == self.state, Pharmacy.state != self.state)
            .order_by(Pharmacy.id)
        )
        return [(ph, reg) for ph, reg in session.execute(stmt)]

    def mail_order_rows(self, session: Session, pharmacy: Pharmacy) -> Iterator[Any]:
        """An out-of-state pharmacy's fills this state is owed: shipped to its residents
        (the pharmacy is mail order, or the claim said 147-U7 = 05) and changed since
        this state last got them. Rows as `rows` gives them, DSP01 from what this
        state holds (FillReport), never the home state's."""
        held = aliased(FillReport)
        owed = _owed_to(held)
        mail = _C.service_type == MAIL_ORDER if not pharmacy.mail_order else true()
        select_list = [held.reported_status if c is _C.reported_status else c for c in _SELECT]
        stmt = (
            select(*select_list)
            .select_from(_FILL)
            .outerjoin(held, and_(held.fill_id == _C.id, held.state == self.state))
            .where(
                _C.pharmacy_id == pharmacy.id,
                _C.patient_state == self.state,
                mail,
                owed,
                _C.updated_at < self.cutoff,
            )
            .order_by(*ROW_ORDER)
        )
        in_flight = self.in_flight(session)
        for row in session.execute(stmt):
            if row[0] not in in_flight:
                yield row

    def resolve_stale_rejects(self) -> None:
        """Rejects of fills that no longer need a report (e.g. reversed) are moot.

        A fill the state rejected is off the queue while it waits for its
        correction: its reject is moot only once the fill changed after it.
        """
        moot = select(Fill.id).where(
            Fill.id == RecordReject.fill_id,
            Fill.needs_report.is_(False),
            or_(
                RecordReject.code.is_distinct_from(STATE_REJECT),
                Fill.updated_at > RecordReject.created_at,
            ),
        )
        with writing(self.sessions) as s:
            s.execute(
                update(RecordReject)
                .where(RecordReject.resolved_at.is_(None), exists(moot))
                .values(resolved_at=self.now)
                .execution_options(synchronize_session=False)
            )

    def last_before(self) -> int:
        """The last submission id before this run wrote anything."""
        if self.before_id is None:
            with self.sessions() as s:
                self.before_id = s.scalar(select(func.max(Submission.id))) or 0
        return self.before_id

    def queued(self, session: Session, pharmacy_id: int) -> int:
        """How many fills the pharmacy has queued (one GROUP BY for all, on first use)."""
        if self._queue is None:
            stmt = (
                select(_C.pharmacy_id, func.count())
                .where(_C.needs_report.is_(True))
                .group_by(_C.pharmacy_id)
            )
            self._queue = {pid: n for pid, n in session.execute(stmt)}
        return self._queue.get(pharmacy_id, 0)

    def rows(self, session: Session, pharmacy_id: int) -> Iterator[Any]:
        """The pharmacy's queued fills in file order: buffered when few, streamed when many.

        A server-side cursor costs a round trip or three per query; most stores
        queue a few hundred fills a day, so only big queues are streamed.
        """
        queued = self.queued(session, pharmacy_id)
        if not queued:
            return
        in_flight = self.in_flight(session)
        stmt = (
            select(*_SELECT)
            .where(
                _C.pharmacy_id == pharmacy_id,
                _C.needs_report.is_(True),
                _C.updated_at < self.cutoff,
            )
            .order_by(*ROW_ORDER)
        )
        if queued > YIELD_PER:
            stmt = stmt.execution_options(yield_per=YIELD_PER)
        for row in session.execute(stmt):
            if row[0] not in in_flight:
                yield row

    def in_flight(self, session: Session) -> set[int]:
        """Fills carried by files written but not yet delivered (usually none).

        Read once per run: as a per-query anti-join, PostgreSQL would hash every
        in-flight record again for each pharmacy, and this run's own files only
        hold pharmacies it has already done.
        """
        if self._flying is None:
            stmt = (
                select(SubmissionRecord.fill_id)
                .join(Submission, Submission.id == SubmissionRecord.submission_id)
                .where(
                    Submission.state.in_(IN_FLIGHT),
                    Submission.id <= self.last_before(),
                    or_(Submission.pmp_state.is_(None), Submission.pmp_state == self.state),
                )
            )
            self._flying = set(session.scalars(stmt))
        return self._flying

    def ingredients(self, session: Session, fill_id: int) -> tuple[asap.Ingredient, ...]:
        """A compound's ingredients in their order, as ASAP values."""
        rows = session.scalars(
            select(FillIngredient)
            .where(FillIngredient.fill_id == fill_id)
            .order_by(FillIngredient.sequence)
        )
        columns = [c for _, c in fillrecord.INGREDIENT]
        return tuple(fillrecord.ingredient_value({c: getattr(i, c) for c in columns}) for i in rows)

    def open_rejects(self, pharmacy_ids: list[int]) -> OpenRejects:
        """Unresolved rejects of these pharmacies' fills: fill -> {(segment, element, reason)}."""
        if self._rejects is None:
            self._rejects = {}
            stmt = (
                select(
                    Fill.pharmacy_id,
                    RecordReject.fill_id,
                    RecordReject.segment,
                    RecordReject.element,
                    RecordReject.message,
                )
                .join(Fill, Fill.id == RecordReject.fill_id)
                .where(RecordReject.resolved_at.is_(None))
            )
            with self.sessions() as s:
                for pid, fill_id, segment, element, message in s.execute(stmt):
                    if fill_id is None:  # joined to Fill: never, but the column allows it
                        continue
                    per = self._rejects.setdefault(pid, {})
                    per.setdefault(fill_id, set()).add((segment, element, message))
        found: OpenRejects = {}
        for pid in pharmacy_ids:
            found.update(self._rejects.get(pid, {}))
        return found

    def busy(self, start: dt.date, end: dt.date) -> set[int]:
        """Pharmacies that owe no zero report for start..end: a file sent or a fill dispensed."""
        with self.sessions() as s:
            reported = set(
                s.scalars(
                    select(submission_pharmacies.c.pharmacy_id)
                    .join(Submission, Submission.id == submission_pharmacies.c.submission_id)
                    .where(
                        Submission.state != "failed",
                        Submission.state_verdict.is_distinct_from("failed"),
                        Submission.extract_date.between(start, end),
                    )
                    .distinct()
                )
            )
            # a fill of an unknown NDC is no controlled dispensing (yet): classified
            # later, it goes as a late record after the zero report, never in its place
            dispensed = set(
                s.scalars(
                    select(Fill.pharmacy_id)
                    .where(Fill.date_of_service.between(start, end), Fill.unclassified.is_(False))
                    .distinct()
                )
            )
        return reported | dispensed

    def taken_names(self) -> set[str]:
        """File names already used by recent submissions (a name is unique for good)."""
        since = self.now - dt.timedelta(days=2)
        with self.sessions() as s:
            return set(
                s.scalars(select(Submission.file_name).where(Submission.created_at >= since))
            )
