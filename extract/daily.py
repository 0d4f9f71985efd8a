"""The day's extract: queued fills -> one validated ASAP file per submitter.

For the day (default: yesterday in the configured time zone) every fill whose
last change happened before the day's end and that still needs a report is
streamed from the database, pharmacy by pharmacy, as the DSP01 the state needs
(00 new, 01 revised, 02 void; a reversal before reporting needs nothing). Each
record goes through the shared validator: a bad one is held back as a
RecordReject, the rest are written. A file with a file-level error is kept for
inspection but marked failed and never submitted. Pharmacies with nothing to
report get a zero report (daily or weekly, a setting).

Memory stays flat: rows stream (yield_per / server-side cursor) straight into
the streaming writer; per file only its bytes and compact arrays of fill ids,
versions and statuses are kept until the transaction that records a batch of
files. The file's bytes are stored with its Submission row, so a file and its
'written' state become durable together: a crash at any point leaves either
nothing (the fills stay queued) or complete written files. Fills carried by a
file not yet delivered are skipped, so re-running the day never puts a fill in
two files. The outbox folder gets a copy of each file for people to read.
"""

from __future__ import annotations

import datetime as dt
import io
import multiprocessing
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace

from sqlalchemy import String, cast, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cashcapture.core.pmp import compounds
from cashcapture.core.pmp import records as asap
from cashcapture.core.pmp.asap import table
from cashcapture.core.pmp.asap.codec import encode, row_encoder
from cashcapture.core.pmp.carry import REASON as CARRY_REASON
from cashcapture.core.pmp.carry import first_uncarriable
from cashcapture.core.pmp.filenames import file_name
from cashcapture.core.pmp.rules import for_state
from cashcapture.core.pmp.validate import REJECT, WARNING, Problem, Report, Validator
from cashcapture.core.private import write_private
from cashcapture.core.store.models import (
    NEW_RECORD,
    REVISED_RECORD,
    STATE_REJECT,
    VOID_RECORD,
    Fill,
    FillIngredient,
    Pharmacy,
    RecordReject,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)
from cashcapture.core.store.repo import IN_FLIGHT
from cashcapture.core.store.sql import dbapi_connection, table_of
from cashcapture.core.store.types import utcnow
from extract import writer as asap_writer
from extract.reader import read
from extract.settings import WEEKDAYS, Settings, SettingsError
from extract.submit import writing

STATUS_CODES = (NEW_RECORD, REVISED_RECORD, VOID_RECORD)
ACCEPT, FILE_FAILED = "Accept", "File Failed"
YIELD_PER = 2000


# --- the day -------------------------------------------------------------------


def default_day(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the configured time zone."""
    now = now or utcnow()
    return now.astimezone(settings.extract.zone()).date() - dt.timedelta(days=1)


def day_end(settings: Settings, day: dt.date) -> dt.datetime:
    """The first instant after `day` in the configured zone, as aware UTC."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), settings.extract.zone())
    return local.astimezone(dt.UTC)


# --- fill rows -> ASAP values -----------------------------------------------------

_FILL = table_of(Fill)
_C = _FILL.c


def _txt(column):
    """The column as the text an ASAP element holds ('' for NULL), computed in SQL."""
    if isinstance(column.type, String):
        return func.coalesce(column, "")
    return func.coalesce(cast(column, String), "")


# ASAP value attribute <- Fill column. One table drives the query and the values;
# dates and quantities stay typed, everything else arrives as text.
PATIENT_MAP = (
    ("id_jurisdiction", _txt(_C.patient_id_jurisdiction)),
    ("id_qualifier", _txt(_C.patient_id_qualifier)),
    ("patient_id", _txt(_C.patient_id)),
    ("last_name", _txt(_C.patient_last_name)),
    ("first_name", _txt(_C.patient_first_name)),
    ("middle_name", _txt(_C.patient_middle_name)),
    ("address1", _txt(_C.patient_address1)),
    ("address2", _txt(_C.patient_address2)),
    ("city", _txt(_C.patient_city)),
    ("state", _txt(_C.patient_state)),
    ("zip", _txt(_C.patient_zip)),
    ("phone", _txt(_C.patient_phone)),
    ("birth_date", _C.patient_dob),
    ("gender", _txt(_C.patient_gender)),
    ("species", _txt(_C.species)),
    ("country", _txt(_C.patient_country)),
)
DISPENSATION_MAP = (
    ("rx_number", _C.rx_number),
    ("date_written", _C.date_written),
    ("refills_authorized", _txt(_C.refills_authorized)),
    ("date_filled", _C.date_of_service),
    ("product_qualifier", _txt(_C.product_id_qualifier)),
    ("product_id", _C.ndc),
    ("quantity", _C.quantity),
    ("days_supply", _txt(_C.days_supply)),
    ("dosage_units", _txt(_C.dosage_units)),
    ("origin", _txt(_C.rx_origin)),
    ("partial_fill", _txt(_C.partial_fill)),
    ("pharmacist_npi", _txt(_C.pharmacist_npi)),
    ("payment_type", _txt(_C.payment_type)),
)
PRESCRIBER_MAP = (
    ("dea", _txt(_C.prescriber_dea)),
    ("npi", _txt(_C.prescriber_npi)),
    ("last_name", _txt(_C.prescriber_last_name)),
    ("first_name", _txt(_C.prescriber_first_name)),
)
# Bookkeeping columns first, then the three value blocks, in this order.
_HEAD = (_C.id, _C.version, _C.state, _C.reported_status, _C.compound, _C.fill_number)
_PAT = slice(len(_HEAD), len(_HEAD) + len(PATIENT_MAP))
_DSP = slice(_PAT.stop, _PAT.stop + len(DISPENSATION_MAP))
_PRE = slice(_DSP.stop, _DSP.stop + len(PRESCRIBER_MAP))
_SELECT = [
    *_HEAD,
    *(col.label(f"pat_{n}") for n, col in PATIENT_MAP),
    *(col.label(f"dsp_{n}") for n, col in DISPENSATION_MAP),
    *(col.label(f"pre_{n}") for n, col in PRESCRIBER_MAP),
]
_PAT_NAMES = tuple(n for n, _ in PATIENT_MAP)
_DSP_NAMES = tuple(n for n, _ in DISPENSATION_MAP)
_PRE_NAMES = tuple(n for n, _ in PRESCRIBER_MAP)
_DATE_FILLED = _DSP.start + _DSP_NAMES.index("date_filled")


def _text(value: object) -> str:
    return "" if value is None else str(value)


def pharmacy_value(ph: Pharmacy) -> asap.Pharmacy:
    return asap.Pharmacy(
        dea=ph.dea,
        npi=_text(ph.npi),
        ncpdp_id=_text(ph.ncpdp_id),
        name=_text(ph.name),
        address1=_text(ph.address1),
        address2=_text(ph.address2),
        city=_text(ph.city),
        state=_text(ph.state),
        zip=_text(ph.zip),
        phone=_text(ph.phone),
    )


def patient_value(values: tuple) -> asap.Patient:
    """From the patient block of a row (PATIENT_MAP order)."""
    return asap.Patient(**dict(zip(_PAT_NAMES, values, strict=True)))


def prescriber_value(values: tuple) -> asap.Prescriber:
    return asap.Prescriber(**dict(zip(_PRE_NAMES, values, strict=True)))


def fill_number_code(n: int) -> str:
    """DSP06: 0 for the first fill, 01-99 for refills."""
    return "0" if n == 0 else f"{n:02d}"


def dispensation_value(
    values: tuple,
    status: str,
    fill_number: int,
    prescriber: asap.Prescriber,
    ingredients: tuple[asap.Ingredient, ...] = (),
) -> asap.Dispensation:
    """From the dispensation block of a row (DISPENSATION_MAP order)."""
    return asap.Dispensation(
        status=status,
        fill_number=fill_number_code(fill_number),
        prescriber=prescriber,
        ingredients=ingredients,
        **dict(zip(_DSP_NAMES, values, strict=True)),
    )


def reporting_status(state: str, reported_status: str | None) -> str | None:
    """Fill.reporting_status over a plain row (same rule, no ORM object)."""
    held = reported_status in (NEW_RECORD, REVISED_RECORD)
    if state == "voided":
        return VOID_RECORD if held else None
    return REVISED_RECORD if held else NEW_RECORD


# --- outcome ------------------------------------------------------------------------


@dataclass
class FileOutcome:
    name: str
    submitter_id: str
    pharmacies: int
    records: int  # records in the file (valid records)
    held_back: int
    status: str  # Accept / File Failed
    zero_report: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class ExtractResult:
    day: dt.date
    files: list[FileOutcome] = field(default_factory=list)
    dropped: int = 0  # reversed before they were ever reported
    rejected: int = 0  # records held back
    problems: list[str] = field(default_factory=list)  # registrations that block a file

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == FILE_FAILED]


# --- validation -----------------------------------------------------------------------


class Checker:
    """The shared validator bound to the state's rules, its drug list and today's date.

    Every record goes through it once, in the bytes that would be sent: the
    file is written, validated whole, and a record with a reject-level problem
    is held back by writing the file again without it. Warnings (e.g. a PO Box
    address where the rules table says warn) let a record go, as at the collector.
    """

    def __init__(
        self,
        state: str,
        version: str,
        today: dt.date,
        drug_list: object | None = None,
        po_box: str | None = None,
    ) -> None:
        try:
            rules = for_state(state)
        except KeyError as exc:
            raise SettingsError(f"[extract] state: {exc.args[0]}") from None
        if rules.version != version:
            raise SettingsError(
                f"[extract] asap_version {version}: the {state} rules table is for {rules.version}"
            )
        if po_box is not None:
            rules = replace(rules, po_box=po_box)
        if drug_list is None:
            from cashcapture.core import drugs

            drug_list = drugs.load(state)
        self.validator = Validator(rules, drug_list, today=today)

    def file(self, data: bytes) -> Report:
        return self.validator.validate(data)

    def compound(
        self, ingredients: tuple[asap.Ingredient, ...]
    ) -> tuple[tuple[str, str] | None, tuple[asap.Ingredient, ...]]:
        """A compound as the state's rules report it (see core.pmp.compounds)."""
        in_list = self.validator.in_list
        listed = in_list if in_list is not None else (lambda ndc: False)
        return compounds.as_reported(self.validator.rules.compound, ingredients, listed)


# --- files --------------------------------------------------------------------------


@dataclass
class _Group:
    """One file's worth of pharmacies: a chain's submitter, or one store."""

    submitter_id: str
    reg_key: str
    pharmacies: list[Pharmacy]


@dataclass
class _Pending:
    """What a file carries, one entry per record in file order, kept compact."""

    fill_ids: array = field(default_factory=lambda: array("q"))
    versions: array = field(default_factory=lambda: array("q"))
    pharmacy_ids: array = field(default_factory=lambda: array("q"))
    filled: array = field(default_factory=lambda: array("l"))  # date ordinals
    statuses: bytearray = field(default_factory=bytearray)  # index into STATUS_CODES
    dropped: list[tuple[int, int]] = field(default_factory=list)
    rejects: dict[int, list[Problem]] = field(default_factory=dict)

    def add(self, fill_id: int, version: int, status: str, filled: dt.date, pid: int) -> None:
        self.fill_ids.append(fill_id)
        self.versions.append(version)
        self.pharmacy_ids.append(pid)
        self.filled.append(filled.toordinal())
        self.statuses.append(STATUS_CODES.index(status))

    def keep(self, indexes: list[int]) -> None:
        """Only these records stay (the others were held back)."""
        for name in ("fill_ids", "versions", "pharmacy_ids", "filled"):
            old = getattr(self, name)
            setattr(self, name, array(old.typecode, (old[i] for i in indexes)))
        self.statuses = bytearray(self.statuses[i] for i in indexes)

    def fill_range(self) -> tuple[dt.date | None, dt.date | None]:
        if not self.filled:
            return None, None
        return dt.date.fromordinal(min(self.filled)), dt.date.fromordinal(max(self.filled))


@dataclass
class _Built:
    """A file made and validated, waiting for the transaction that records it."""

    group: _Group
    name: str
    content: bytes | None  # None: nothing went in (all held back, or nothing queued)
    pending: _Pending
    errors: list[str]
    open_rejects: dict[int, set]
    zero: tuple[dt.date, dt.date] | None = None
    pharmacy_id: int | None = None  # the store a zero report is for


BATCH_BYTES = 32 * 1024 * 1024  # file contents held before one recording transaction
BATCH_FILES = 500


class Extractor:
    """One extract run over one day. `run()` does it all."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        day: dt.date,
        *,
        now: dt.datetime | None = None,
        checker: Checker | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.day = day
        self.cutoff = day_end(settings, day)
        self.now = now or utcnow()
        self.local_now = self.now.astimezone(settings.extract.zone())
        self.checker = checker or Checker(
            settings.extract.state,
            settings.extract.asap_version,
            self.local_now.date(),
            po_box=settings.extract.po_box,
        )
        self.progress = progress or (lambda done, total: None)
        # Rows -> PAT / DSP elements without value objects (same strings as the values give).
        try:
            elements = table(settings.extract.asap_version)
        except KeyError as exc:
            raise SettingsError(f"[extract] asap_version: {exc.args[0]}") from None
        self._table = elements
        self._pat_elements = row_encoder(elements, "PAT", _PAT_NAMES, asap.Patient())
        self._dsp_elements = row_encoder(
            elements, "DSP", (*_DSP_NAMES, "status", "fill_number"), asap.Dispensation()
        )
        self.outbox = settings.outbox_dir() if settings.extract.outbox else None
        self.result = ExtractResult(day=day)
        self._taken: set[str] | None = None  # file names in use
        self._queue: dict[int, int] | None = None  # pharmacy -> fills queued
        self._flying: set[int] | None = None  # fills in files not yet delivered
        self.before_id: int | None = None  # submissions up to this id predate the run
        self._rejects: dict[int, dict[int, set]] | None = None  # pharmacy -> fill -> open
        self._active: set[int] = set()  # pharmacies with any fill activity this run
        self._batch: list[_Built] = []
        self._batch_bytes = 0

    # -- planning --
    def groups(self, session: Session) -> list[_Group]:
        by_submitter: dict[str, _Group] = {}
        # A deactivated pharmacy still sends what it has queued (no zero reports).
        queued = exists().where(Fill.pharmacy_id == Pharmacy.id, Fill.needs_report.is_(True))
        stmt = select(Pharmacy).where(or_(Pharmacy.active.is_(True), queued)).order_by(Pharmacy.id)
        for ph in session.scalars(stmt):
            submitter = ph.submitter_id or self.settings.extract.submitter_id or ph.dea
            group = by_submitter.get(submitter)
            if group is None:
                group = by_submitter[submitter] = _Group(submitter, "", [])
            group.pharmacies.append(ph)
            group.reg_key = group.reg_key or ph.reg_key or ""
        for group in by_submitter.values():
            group.reg_key = group.reg_key or self.settings.extract.reg_key
        return list(by_submitter.values())

    def run(self, workers: int = 1) -> ExtractResult:
        """Every group's file, then zero reports; groups spread over `workers` processes."""
        with self.sessions() as session:
            groups = self.groups(session)
            session.expunge_all()
        self._resolve_stale_rejects()
        self._last_before()
        usable = []
        for group in groups:
            problem = self._registration_problem(group)
            if problem:
                self.result.problems.append(problem)
            else:
                usable.append(group)
        if workers > 1 and len(usable) > 1:
            self._run_parallel(usable, workers)
        else:
            self.run_groups(usable)
        self._zero_reports(usable)
        self._flush()
        return self.result

    def run_groups(self, groups: list[_Group]) -> None:
        total = sum(len(g.pharmacies) for g in groups)
        done = 0
        for group in groups:
            self._add(self._build_group(group))
            done += len(group.pharmacies)
            self.progress(done, total)
        self._flush()

    def _run_parallel(self, groups: list[_Group], workers: int) -> None:
        """Groups are independent: hand chunks of them to worker processes."""
        url = self.sessions.kw["bind"].url.render_as_string(hide_password=False)
        chunks: list[list[str]] = []
        per_chunk = max(1, len(groups) // (workers * 8))
        for i in range(0, len(groups), per_chunk):
            chunks.append([g.submitter_id for g in groups[i : i + per_chunk]])
        sizes = {g.submitter_id: len(g.pharmacies) for g in groups}
        total, done = sum(sizes.values()), 0
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {
                pool.submit(
                    _extract_chunk, url, self.settings, self.day, self.now, self.before_id, chunk
                ): chunk
                for chunk in chunks
            }
            for future in as_completed(futures):
                part, active = future.result()
                self.result.files += part.files
                self.result.dropped += part.dropped
                self.result.rejected += part.rejected
                self._active |= active
                done += sum(sizes[sub] for sub in futures[future])
                self.progress(done, total)
        self.result.files.sort(key=lambda f: f.name)

    def _registration_problem(self, group: _Group) -> str:
        """Why no file can be named for this submitter ("" when it can)."""
        if not group.reg_key:
            return (
                f"submitter {group.submitter_id}: no RegKey (register one for the pharmacy "
                "or set [extract] reg_key); its fills stay queued"
            )
        try:
            file_name(
                group.submitter_id, group.reg_key, self.local_now, self.settings.extract.state
            )
        except ValueError as exc:
            return f"submitter {group.submitter_id}: {exc} for the file name; fills stay queued"
        return ""

    def _resolve_stale_rejects(self) -> None:
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

    # -- names --
    def _name(self, group: _Group) -> tuple[str, dt.datetime]:
        """A file name no other file has (the unique column is the backstop)."""
        if self._taken is None:
            since = self.now - dt.timedelta(days=2)
            with self.sessions() as s:
                self._taken = set(
                    s.scalars(select(Submission.file_name).where(Submission.created_at >= since))
                )
        when = self.local_now.replace(microsecond=0, tzinfo=None)
        state = self.settings.extract.state
        while True:
            name = file_name(group.submitter_id, group.reg_key, when, state)
            if name not in self._taken:
                self._taken.add(name)
                return name, when
            when += dt.timedelta(seconds=1)  # one file per submitter per second

    def _header(self, name: str, when: dt.datetime) -> asap.Header:
        control = name.removesuffix(".dat").split("_", 2)[2]
        if len(control) > 40:
            control = control[-40:]
        ex = self.settings.extract
        return asap.Header(
            control_number=control,
            created=when,
            version=ex.asap_version,
            file_type=ex.file_type,
            source_id=ex.state,
        )

    # -- streaming --
    def _queued(self, session: Session, pharmacy_id: int) -> int:
        """How many fills the pharmacy has queued (one GROUP BY for all, on first use)."""
        if self._queue is None:
            stmt = (
                select(_C.pharmacy_id, func.count())
                .where(_C.needs_report.is_(True))
                .group_by(_C.pharmacy_id)
            )
            self._queue = {pid: n for pid, n in session.execute(stmt)}
        return self._queue.get(pharmacy_id, 0)

    def _rows(self, session: Session, pharmacy_id: int) -> Iterator:
        """The pharmacy's queued fills in file order: buffered when few, streamed when many.

        A server-side cursor costs a round trip or three per query; most stores
        queue a few hundred fills a day, so only big queues are streamed.
        """
        queued = self._queued(session, pharmacy_id)
        if not queued:
            return
        in_flight = self._in_flight(session)
        stmt = (
            select(*_SELECT)
            .where(
                _C.pharmacy_id == pharmacy_id,
                _C.needs_report.is_(True),
                _C.updated_at < self.cutoff,
            )
            .order_by(
                _C.patient_last_name,
                _C.patient_first_name,
                _C.patient_dob,
                _C.patient_id,
                _C.id,
            )
        )
        if queued > YIELD_PER:
            stmt = stmt.execution_options(yield_per=YIELD_PER)
        for row in session.execute(stmt):
            if row[0] not in in_flight:
                yield row

    def _last_before(self) -> int:
        """The last submission id before this run wrote anything."""
        if self.before_id is None:
            with self.sessions() as s:
                self.before_id = s.scalar(select(func.max(Submission.id))) or 0
        return self.before_id

    def _in_flight(self, session: Session) -> set[int]:
        """Fills carried by files written but not yet delivered (usually none).

        Read once per run: as a per-query anti-join, PostgreSQL would hash every
        in-flight record again for each pharmacy, and this run's own files only
        hold pharmacies it has already done.
        """
        if self._flying is None:
            stmt = (
                select(SubmissionRecord.fill_id)
                .join(Submission, Submission.id == SubmissionRecord.submission_id)
                .where(Submission.state.in_(IN_FLIGHT), Submission.id <= self._last_before())
            )  # files of this run only hold pharmacies already done
            self._flying = set(session.scalars(stmt))
        return self._flying

    def _ingredients(self, session: Session, fill_id: int) -> tuple[asap.Ingredient, ...]:
        rows = session.scalars(
            select(FillIngredient)
            .where(FillIngredient.fill_id == fill_id)
            .order_by(FillIngredient.sequence)
        )
        return tuple(
            asap.Ingredient(
                sequence=str(i.sequence),
                product_id=i.ndc,
                quantity=i.quantity,
                product_qualifier=_text(i.product_id_qualifier),
                dosage_units=_text(i.dosage_units),
            )
            for i in rows
        )

    def _open_rejects(self, pharmacy_ids: list[int]) -> dict[int, set]:
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
        found: dict[int, set] = {}
        for pid in pharmacy_ids:
            found.update(self._rejects.get(pid, {}))
        return found

    def _build_group(self, group: _Group) -> _Built:
        pending = _Pending()
        buf = io.BytesIO()
        writer: asap_writer.AsapWriter | None = None
        name = ""
        with self.sessions() as session:
            open_rejects = self._open_rejects([p.id for p in group.pharmacies])
            prescribers: dict[tuple, asap.Prescriber] = {}
            pre_bad: dict[tuple, Problem | None] = {}
            for ph in group.pharmacies:
                pha = pharmacy_value(ph)
                pha_bad = self._uncarriable(encode(self._table, "PHA", pha))
                patient_key: tuple | None = None
                pat: list[str] = []
                pat_bad: Problem | None = None
                for row in self._rows(session, ph.id):
                    fill_id, version, state, reported, compound, fill_number = row[:6]
                    self._active.add(ph.id)
                    status = reporting_status(state, reported)
                    if status is None:
                        pending.dropped.append((fill_id, version))
                        continue
                    key = row[_PAT]
                    if key != patient_key:
                        pat, patient_key = self._pat_elements(key), key
                        pat_bad = self._uncarriable(pat)
                    pre_key = row[_PRE]
                    prescriber = prescribers.get(pre_key)
                    if prescriber is None:
                        if len(prescribers) > 10_000:
                            prescribers.clear()
                            pre_bad.clear()
                        prescriber = prescribers[pre_key] = prescriber_value(pre_key)
                        pre_bad[pre_key] = self._uncarriable(
                            encode(self._table, "PRE", prescriber)
                        )
                    ingredients = self._ingredients(session, fill_id) if compound else ()
                    product = None
                    if compound:
                        product, ingredients = self.checker.compound(ingredients)
                    dsp = self._dsp_elements((*row[_DSP], status, fill_number_code(fill_number)))
                    if product is not None:
                        dsp[7:9] = product  # DSP07 / DSP08: the first controlled ingredient
                    bad = pha_bad or pat_bad or pre_bad.get(pre_key) or self._uncarriable(
                        dsp, *(encode(self._table, "CDI", i) for i in ingredients)
                    )
                    if bad is not None:  # held back alone: the rest of the file still goes
                        pending.rejects.setdefault(fill_id, []).append(bad)
                        continue
                    if writer is None:
                        name, when = self._name(group)
                        writer = asap_writer.AsapWriter(buf, self._header(name, when))
                    writer.add_encoded(pha, pat, dsp, prescriber, ingredients)
                    pending.add(fill_id, version, status, row[_DATE_FILLED], ph.id)
        if writer is None:
            return _Built(group, name, None, pending, [], open_rejects)
        writer.close()
        content, errors = self._validated(buf.getvalue(), pending)
        return _Built(group, name, content, pending, errors, open_rejects)

    def _uncarriable(self, *segments: list[str]) -> Problem | None:
        """The reject of a record holding a value no file can carry (a separator, a line
        break, a control character...), found before the writer would refuse the file."""
        for elements in segments:
            i = first_uncarriable(elements)
            if i is not None:
                seg = elements[0]
                name = f"{seg}{i:02d}"
                return Problem(
                    REJECT, seg, i, name, CARRY_REASON, name, f"Value {CARRY_REASON}"
                )
        return None

    def _validated(self, content: bytes, pending: _Pending) -> tuple[bytes | None, list[str]]:
        """Validate the file; hold back rejected records by writing it again without them."""
        report = self.checker.file(content)
        if report.failed:
            return content, [p.message for p in report.file_errors]
        bad = report.rejected_records
        if not bad:
            return content, []
        for p in report.rejects:
            pending.rejects.setdefault(pending.fill_ids[p.rec - 1], []).append(p)
        keep = [i for i in range(len(pending.fill_ids)) if i + 1 not in bad]
        if not keep:
            pending.keep([])
            return None, []
        parsed = read(content)
        records = list(parsed.records())
        buf = io.BytesIO()
        with asap_writer.AsapWriter(buf, parsed.header) as w:
            for i in keep:
                w.add_record(records[i])
        pending.keep(keep)
        content = buf.getvalue()
        again = self.checker.file(content)
        if again.failed or again.rejected_records:  # never send what it would refuse
            return content, [p.message for p in again.problems if p.severity != WARNING]
        return content, []

    # -- recording --
    def _add(self, built: _Built) -> None:
        self._batch.append(built)
        self._batch_bytes += len(built.content or b"")
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_FILES:
            self._flush()

    def _flush(self) -> None:
        """Record a batch of files, their records, rejects and drops: one transaction.

        The content goes into the database with its row, so the file and its
        'written' state become durable together; the outbox copy is for people.
        """
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        outcomes: list[tuple[_Built, FileOutcome]] = []
        with writing(self.sessions) as s:
            for b in batch:
                submission_id = None
                if b.content is not None:
                    submission_id, outcome = self._record_file(s, b)
                    outcomes.append((b, outcome))
                self._drop(s, b.pending.dropped)
                self._save_rejects(s, submission_id, b)
        for b, outcome in outcomes:
            if self.outbox is not None and b.content is not None:
                write_private(self.outbox / b.name, b.content)  # made when first needed
            self.result.files.append(outcome)
        for b in batch:
            self.result.dropped += len(b.pending.dropped)
            self.result.rejected += len(b.pending.rejects)

    def _record_file(self, s: Session, b: _Built) -> tuple[int, FileOutcome]:
        pending = b.pending
        status = FILE_FAILED if b.errors else ACCEPT
        lo, hi = b.zero or pending.fill_range()
        values = dict(
            file_name=b.name,
            submitter_id=b.group.submitter_id,
            extract_date=self.day,
            zero_report=b.zero is not None,
            fill_date_min=lo,
            fill_date_max=hi,
            # counted as `validate` counts the file: the records in it (a zero report's
            # one), valid unless the file failed; held-back records are in `rejects`
            record_count=len(pending.fill_ids) or int(b.zero is not None),
            valid_record_count=0 if b.errors else len(pending.fill_ids) or int(b.zero is not None),
            state="failed" if b.errors else "written",
            created_at=self.now,
            processed_at=self.now,
            collector_status=status,
            collector_answer="\n".join(b.errors) or None,
            last_error=b.errors[0] if b.errors else None,
            content=b.content,
            path=str(self.outbox / b.name) if self.outbox is not None else None,
            attempts=0,
        )
        sub_id = s.execute(insert(Submission).values(values).returning(Submission.id)).scalar_one()
        pharmacies = {b.pharmacy_id} if b.pharmacy_id else set(pending.pharmacy_ids)
        self._link_pharmacies(s, sub_id, pharmacies)
        if not b.errors:
            self._insert_records(s, sub_id, pending)
        outcome = FileOutcome(
            name=b.name,
            submitter_id=b.group.submitter_id,
            pharmacies=len(pharmacies),
            records=len(pending.fill_ids),
            held_back=len(pending.rejects),
            status=status,
            zero_report=b.zero is not None,
            errors=b.errors,
        )
        return sub_id, outcome

    @staticmethod
    def _link_pharmacies(s: Session, submission_id: int, pharmacy_ids: set[int]) -> None:
        if pharmacy_ids:
            s.execute(
                insert(submission_pharmacies),
                [{"submission_id": submission_id, "pharmacy_id": p} for p in sorted(pharmacy_ids)],
            )

    @staticmethod
    def _insert_records(s: Session, submission_id: int, pending: _Pending) -> None:
        rows = (
            (submission_id, fid, STATUS_CODES[status], version)
            for fid, version, status in zip(
                pending.fill_ids, pending.versions, pending.statuses, strict=True
            )
        )
        conn = s.connection()
        columns = "submission_records (submission_id, fill_id, reporting_status, fill_version)"
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            cursor = dbapi_connection(conn).cursor()
            try:
                if dialect == "postgresql":  # COPY: a national day is a million rows
                    with cursor.copy(f"COPY {columns} FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:  # plain tuples in one executemany: no per-row dicts
                    cursor.executemany(f"INSERT INTO {columns} VALUES (?, ?, ?, ?)", rows)
            finally:
                cursor.close()
            return
        names = ("submission_id", "fill_id", "reporting_status", "fill_version")
        conn.execute(
            insert(table_of(SubmissionRecord)), [dict(zip(names, r, strict=True)) for r in rows]
        )

    def _drop(self, s: Session, dropped: list[tuple[int, int]]) -> None:
        """Reversed before ever reported: nothing for the state, off the queue."""
        for fill_id, version in dropped:
            s.execute(
                update(Fill)
                .where(Fill.id == fill_id, Fill.version == version)
                .values(needs_report=False)
                .execution_options(synchronize_session=False)
            )

    def _save_rejects(self, s: Session, submission_id: int | None, b: _Built) -> None:
        rows = []
        for fill_id, problems in b.pending.rejects.items():
            known = b.open_rejects.get(fill_id, set())
            for p in problems:
                if (p.segment, p.element_id, p.reject_reason) in known:
                    continue  # still the same problem, already listed
                known.add((p.segment, p.element_id, p.reject_reason))
                rows.append(
                    {
                        "submission_id": submission_id,
                        "fill_id": fill_id,
                        "segment": p.segment,
                        "element": p.element_id,
                        "code": p.severity,
                        "message": p.reject_reason,
                        "created_at": self.now,
                    }
                )
        if rows:
            s.execute(insert(table_of(RecordReject)), rows)
        if b.open_rejects and b.content is not None and not b.errors:
            went = set(b.pending.fill_ids)
            passed = [fid for fid in b.open_rejects if fid in went]
            if passed:
                s.execute(
                    update(RecordReject)
                    .where(RecordReject.fill_id.in_(passed), RecordReject.resolved_at.is_(None))
                    .values(resolved_at=self.now)
                )

    # -- zero reports --
    def _zero_period(self) -> tuple[dt.date, dt.date] | None:
        cadence = self.settings.extract.zero_reports
        if cadence == "daily":
            return self.day, self.day
        if cadence == "weekly" and self.day.weekday() == WEEKDAYS.index(
            self.settings.extract.week_ends
        ):
            return self.day - dt.timedelta(days=6), self.day
        return None

    def _zero_reports(self, groups: list[_Group]) -> None:
        period = self._zero_period()
        if period is None:
            return
        start, end = period
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
            dispensed = set(
                s.scalars(
                    select(Fill.pharmacy_id)
                    .where(Fill.date_of_service.between(start, end))
                    .distinct()
                )
            )
            busy = reported | dispensed | self._active
            for group in groups:
                for ph in group.pharmacies:
                    if ph.id in busy or not ph.active or ph.created_at >= self.cutoff:
                        continue
                    self._add(self._zero_report(s, group, ph, start, end))

    def _zero_report(
        self, s: Session, group: _Group, ph: Pharmacy, start: dt.date, end: dt.date
    ) -> _Built:
        name, when = self._name(group)
        data = asap_writer.write(
            asap_writer.zero_report(self._header(name, when), pharmacy_value(ph), start, end)
        )
        report = self.checker.file(data)
        errors = [p.message for p in report.problems if p.severity != WARNING]
        return _Built(group, name, data, _Pending(), errors, {}, (start, end), ph.id)


def _extract_chunk(
    url: str,
    settings: Settings,
    day: dt.date,
    now: dt.datetime,
    before_id: int | None,
    submitters: list[str],
) -> tuple[ExtractResult, set[int]]:
    """Worker process: the files of these submitters (zero reports stay with the parent).

    One Extractor per worker process and run, so what it reads once (queue
    counts, in-flight fills, names, rejects, groups) serves all its chunks.
    """
    from cashcapture.core.store import make_engine, session_factory

    key = (url, day, now)
    state = _WORKER.get(key)
    if state is None:
        _WORKER.clear()
        ex = Extractor(session_factory(make_engine(url)), settings, day, now=now)
        ex.before_id = before_id
        with ex.sessions() as session:
            groups = {g.submitter_id: g for g in ex.groups(session)}
            session.expunge_all()
        state = _WORKER[key] = (ex, groups)
    ex, groups = state
    ex.result, ex._active = ExtractResult(day=day), set()
    ex.run_groups([groups[sub] for sub in submitters])
    return ex.result, ex._active


_WORKER: dict[tuple, tuple[Extractor, dict[str, _Group]]] = {}


def extract(
    sessions: sessionmaker[Session],
    settings: Settings,
    day: dt.date | None = None,
    *,
    now: dt.datetime | None = None,
    checker: Checker | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> ExtractResult:
    """Extract `day` (default yesterday in the configured zone); safe to re-run.

    `workers` (default: the [extract] workers setting) > 1 spreads the
    submitters over that many processes; a custom `checker` runs in-process.
    """
    now = now or utcnow()
    day = day or default_day(settings, now)
    if day >= now.astimezone(settings.extract.zone()).date() + dt.timedelta(days=1):
        raise SettingsError(f"cannot extract {day}: it has not begun")
    workers = settings.extract.workers if workers is None else workers
    ex = Extractor(sessions, settings, day, now=now, checker=checker, progress=progress)
    return ex.run(1 if checker is not None else workers)
