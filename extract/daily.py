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
the streaming writer; per file only compact arrays of fill ids, versions and
statuses are kept until the short transaction that records the file. Files
are made durable on disk before that transaction, so a crash at any point
leaves either nothing (the fills stay queued) or a complete written file.
Fills carried by a file not yet delivered are skipped, so re-running the day
never puts a fill in two files.
"""

from __future__ import annotations

import datetime as dt
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from cashcapture.store.models import (
    NEW_RECORD,
    REVISED_RECORD,
    VOID_RECORD,
    Fill,
    FillIngredient,
    Pharmacy,
    RecordReject,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)
from cashcapture.store.repo import IN_FLIGHT
from cashcapture.store.types import utcnow

from . import records as asap
from . import writer as asap_writer
from .rules import for_state
from .settings import WEEKDAYS, Settings, SettingsError
from .validate import WARNING, Problem, Report, Validator, validate_record

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

_FILL = Fill.__table__
_COLUMNS = [c for c in _FILL.c if c.name not in ("created_by_claim_id", "updated_by_claim_id")]


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


def patient_value(row) -> asap.Patient:
    return asap.Patient(
        id_jurisdiction=_text(row.patient_id_jurisdiction),
        id_qualifier=_text(row.patient_id_qualifier),
        patient_id=_text(row.patient_id),
        last_name=_text(row.patient_last_name),
        first_name=_text(row.patient_first_name),
        middle_name=_text(row.patient_middle_name),
        address1=_text(row.patient_address1),
        address2=_text(row.patient_address2),
        city=_text(row.patient_city),
        state=_text(row.patient_state),
        zip=_text(row.patient_zip),
        phone=_text(row.patient_phone),
        birth_date=row.patient_dob,
        gender=_text(row.patient_gender),
        species=_text(row.species),
        country=_text(row.patient_country),
    )


def fill_number_code(n: int) -> str:
    """DSP06: 0 for the first fill, 01-99 for refills."""
    return "0" if n == 0 else f"{n:02d}"


def dispensation_value(
    row, status: str, ingredients: tuple[asap.Ingredient, ...] = ()
) -> asap.Dispensation:
    return asap.Dispensation(
        status=status,
        rx_number=row.rx_number,
        date_written=row.date_written,
        refills_authorized=_text(row.refills_authorized),
        date_filled=row.date_of_service,
        fill_number=fill_number_code(row.fill_number),
        product_qualifier=_text(row.product_id_qualifier),
        product_id=row.ndc,
        quantity=row.quantity,
        days_supply=_text(row.days_supply),
        dosage_units=_text(row.dosage_units),
        origin=_text(row.rx_origin),
        partial_fill=_text(row.partial_fill),
        pharmacist_npi=_text(row.pharmacist_npi),
        payment_type=_text(row.payment_type),
        prescriber=asap.Prescriber(
            dea=_text(row.prescriber_dea),
            npi=_text(row.prescriber_npi),
            last_name=_text(row.prescriber_last_name),
            first_name=_text(row.prescriber_first_name),
        ),
        ingredients=ingredients,
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

    A record with a reject-level problem is held back; warnings (e.g. a PO Box
    address, where the rules table says warn) let it go, as the collector does.
    """

    def __init__(
        self, state: str, version: str, today: dt.date, drug_list: object | None = None
    ) -> None:
        try:
            rules = for_state(state)
        except KeyError as exc:
            raise SettingsError(f"[extract] state: {exc.args[0]}") from None
        if rules.version != version:
            raise SettingsError(
                f"[extract] asap_version {version}: the {state} rules table is for {rules.version}"
            )
        if drug_list is None:
            from cashcapture import drugs

            drug_list = drugs.load(state)
        self.rules, self.drug_list, self.today = rules, drug_list, today
        self.validator = Validator(rules, drug_list, today=today)

    def record(self, record: asap.Record, terminator: str = "~") -> list[Problem]:
        found = validate_record(
            record, self.rules, today=self.today, validator=self.validator, terminator=terminator
        )
        return [p for p in found if p.severity != WARNING]

    def file(self, data: bytes) -> Report:
        return Validator(self.rules, self.drug_list, today=self.today).validate(data)


# --- files --------------------------------------------------------------------------


@dataclass
class _Group:
    """One file's worth of pharmacies: a chain's submitter, or one store."""

    submitter_id: str
    reg_key: str
    pharmacies: list[Pharmacy]


@dataclass
class _Pending:
    """What a written file carries, kept compact until it is recorded."""

    fill_ids: array = field(default_factory=lambda: array("q"))
    versions: array = field(default_factory=lambda: array("q"))
    statuses: bytearray = field(default_factory=bytearray)  # index into STATUS_CODES
    pharmacy_ids: set[int] = field(default_factory=set)
    dropped: list[tuple[int, int]] = field(default_factory=list)
    rejects: dict[int, list[Problem]] = field(default_factory=dict)
    passed_with_old_rejects: list[int] = field(default_factory=list)
    fill_min: dt.date | None = None
    fill_max: dt.date | None = None

    def add(self, fill_id: int, version: int, status: str, filled: dt.date) -> None:
        self.fill_ids.append(fill_id)
        self.versions.append(version)
        self.statuses.append(STATUS_CODES.index(status))
        self.fill_min = filled if self.fill_min is None else min(self.fill_min, filled)
        self.fill_max = filled if self.fill_max is None else max(self.fill_max, filled)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            settings.extract.state, settings.extract.asap_version, self.local_now.date()
        )
        self.progress = progress or (lambda done, total: None)
        self.outbox = settings.outbox_dir()
        self.result = ExtractResult(day=day)
        self._names: set[str] = set()
        self._active: set[int] = set()  # pharmacies with any fill activity this run

    # -- planning --
    def groups(self, session: Session) -> list[_Group]:
        by_submitter: dict[str, _Group] = {}
        stmt = select(Pharmacy).where(Pharmacy.active.is_(True)).order_by(Pharmacy.id)
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

    def run(self) -> ExtractResult:
        self.outbox.mkdir(parents=True, exist_ok=True)
        self._clean_outbox()
        with self.sessions() as session:
            groups = self.groups(session)
            session.expunge_all()
        self._resolve_stale_rejects()
        total = sum(len(g.pharmacies) for g in groups)
        done = 0
        for group in groups:
            problem = self._registration_problem(group)
            if problem:
                self.result.problems.append(problem)
            else:
                self._extract_group(group)
            done += len(group.pharmacies)
            self.progress(done, total)
        self._zero_reports([g for g in groups if not self._registration_problem(g)])
        return self.result

    def _registration_problem(self, group: _Group) -> str:
        """Why no file can be named for this submitter ("" when it can)."""
        if not group.reg_key:
            return (
                f"submitter {group.submitter_id}: no RegKey (register one for the pharmacy "
                "or set [extract] reg_key); its fills stay queued"
            )
        try:
            asap_writer.file_name(
                group.submitter_id, group.reg_key, self.local_now, self.settings.extract.state
            )
        except ValueError as exc:
            return f"submitter {group.submitter_id}: {exc} for the file name; fills stay queued"
        return ""

    def _clean_outbox(self) -> None:
        """Temp files of a run killed while writing: never recorded, never sent."""
        for tmp in self.outbox.glob("*.dat.tmp"):
            tmp.unlink(missing_ok=True)

    def _resolve_stale_rejects(self) -> None:
        """Rejects of fills that no longer need a report (e.g. reversed) are moot."""
        with self.sessions.begin() as s:
            s.execute(
                update(RecordReject)
                .where(
                    RecordReject.resolved_at.is_(None),
                    RecordReject.fill_id.in_(select(Fill.id).where(Fill.needs_report.is_(False))),
                )
                .values(resolved_at=self.now)
            )

    # -- names --
    def _name(self, group: _Group, session: Session) -> tuple[str, dt.datetime]:
        when = self.local_now.replace(microsecond=0, tzinfo=None)
        state = self.settings.extract.state
        while True:
            name = asap_writer.file_name(group.submitter_id, group.reg_key, when, state)
            taken = name in self._names or session.scalar(
                select(exists().where(Submission.file_name == name))
            )
            if not taken:
                self._names.add(name)
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
    def _rows(self, session: Session, pharmacy_id: int) -> Iterator:
        in_flight = (
            select(SubmissionRecord.id)
            .join(Submission, Submission.id == SubmissionRecord.submission_id)
            .where(SubmissionRecord.fill_id == _FILL.c.id, Submission.state.in_(IN_FLIGHT))
        )
        stmt = (
            select(*_COLUMNS)
            .where(
                _FILL.c.pharmacy_id == pharmacy_id,
                _FILL.c.needs_report.is_(True),
                _FILL.c.updated_at < self.cutoff,
                ~exists(in_flight),
            )
            .order_by(
                _FILL.c.patient_last_name,
                _FILL.c.patient_first_name,
                _FILL.c.patient_dob,
                _FILL.c.patient_id,
                _FILL.c.id,
            )
            .execution_options(yield_per=YIELD_PER)
        )
        yield from session.execute(stmt)

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

    def _open_rejects(self, session: Session, pharmacy_ids: list[int]) -> dict[int, set]:
        rows = session.execute(
            select(
                RecordReject.fill_id,
                RecordReject.segment,
                RecordReject.element,
                RecordReject.message,
            )
            .join(Fill, Fill.id == RecordReject.fill_id)
            .where(RecordReject.resolved_at.is_(None), Fill.pharmacy_id.in_(pharmacy_ids))
        )
        found: dict[int, set] = {}
        for fill_id, segment, element, message in rows:
            found.setdefault(fill_id, set()).add((segment, element, message))
        return found

    def _extract_group(self, group: _Group) -> None:
        pending = _Pending()
        tmp: Path | None = None
        writer: asap_writer.AsapWriter | None = None
        out = None
        try:
            with self.sessions() as session:
                name = ""
                open_rejects = self._open_rejects(session, [p.id for p in group.pharmacies])
                for ph in group.pharmacies:
                    pha = pharmacy_value(ph)
                    patient_row_key = None
                    patient = None
                    for row in self._rows(session, ph.id):
                        self._active.add(ph.id)
                        status = reporting_status(row.state, row.reported_status)
                        if status is None:
                            pending.dropped.append((row.id, row.version))
                            continue
                        key = (
                            row.patient_last_name,
                            row.patient_first_name,
                            row.patient_dob,
                            row.patient_id,
                            row.patient_address1,
                            row.patient_zip,
                        )
                        if key != patient_row_key:
                            patient, patient_row_key = patient_value(row), key
                        ingredients = self._ingredients(session, row.id) if row.compound else ()
                        record = asap.Record(
                            pha, patient, dispensation_value(row, status, ingredients)
                        )
                        problems = self.checker.record(record)
                        if problems:
                            pending.rejects[row.id] = problems
                            continue
                        if row.id in open_rejects:
                            pending.passed_with_old_rejects.append(row.id)
                        if writer is None:
                            name, when = self._name(group, session)
                            tmp = self.outbox / (name + ".tmp")
                            out = open(tmp, "wb")  # noqa: SIM115 - closed below
                            writer = asap_writer.AsapWriter(out, self._header(name, when))
                        writer.add(pha, patient, record.fill)
                        pending.pharmacy_ids.add(ph.id)
                        pending.add(row.id, row.version, status, row.date_of_service)
            if writer is not None:
                writer.close()
                out.flush()
                os.fsync(out.fileno())
                out.close()
                out = None
            self._record_group(group, name, tmp, pending, open_rejects)
        finally:
            if out is not None:
                out.close()

    # -- recording --
    def _record_group(
        self,
        group: _Group,
        name: str,
        tmp: Path | None,
        pending: _Pending,
        open_rejects: dict[int, set],
    ) -> None:
        outcome: FileOutcome | None = None
        final: Path | None = None
        errors: list[str] = []
        if tmp is not None:
            final = self.outbox / name
            report = self.checker.file(tmp.read_bytes())
            errors = [p.message for p in report.file_errors]
            if report.rejects:  # a record the per-record check let through: fail safe
                errors += [p.message for p in report.rejects]
            os.replace(tmp, final)
            _fsync_dir(self.outbox)
            outcome = FileOutcome(
                name=name,
                submitter_id=group.submitter_id,
                pharmacies=len(pending.pharmacy_ids),
                records=len(pending.fill_ids),
                held_back=len(pending.rejects),
                status=FILE_FAILED if errors else ACCEPT,
                errors=errors,
            )
        with self.sessions.begin() as s:
            submission_id = None
            if outcome is not None and final is not None:
                sub = Submission(
                    file_name=name,
                    submitter_id=group.submitter_id,
                    extract_date=self.day,
                    zero_report=False,
                    fill_date_min=pending.fill_min,
                    fill_date_max=pending.fill_max,
                    record_count=outcome.records + len(pending.rejects),
                    valid_record_count=outcome.records,
                    state="failed" if errors else "written",
                    created_at=self.now,
                    processed_at=self.now,
                    collector_status=outcome.status,
                    collector_answer="\n".join(errors) or None,
                    last_error=errors[0] if errors else None,
                    path=str(final),
                )
                s.add(sub)
                s.flush()
                submission_id = sub.id
                self._link_pharmacies(s, submission_id, pending.pharmacy_ids)
                if not errors:
                    self._insert_records(s, submission_id, pending)
            self._drop(s, pending.dropped)
            self._save_rejects(s, submission_id, pending, open_rejects)
        self.result.dropped += len(pending.dropped)
        self.result.rejected += len(pending.rejects)
        if outcome is not None:
            self.result.files.append(outcome)

    @staticmethod
    def _link_pharmacies(s: Session, submission_id: int, pharmacy_ids: set[int]) -> None:
        if pharmacy_ids:
            s.execute(
                insert(submission_pharmacies),
                [{"submission_id": submission_id, "pharmacy_id": p} for p in sorted(pharmacy_ids)],
            )

    @staticmethod
    def _insert_records(s: Session, submission_id: int, pending: _Pending) -> None:
        table = SubmissionRecord.__table__
        batch: list[dict] = []
        for fid, version, status in zip(
            pending.fill_ids, pending.versions, pending.statuses, strict=True
        ):
            batch.append(
                {
                    "submission_id": submission_id,
                    "fill_id": fid,
                    "reporting_status": STATUS_CODES[status],
                    "fill_version": version,
                }
            )
            if len(batch) >= 5000:
                s.execute(insert(table), batch)
                batch = []
        if batch:
            s.execute(insert(table), batch)

    def _drop(self, s: Session, dropped: list[tuple[int, int]]) -> None:
        """Reversed before ever reported: nothing for the state, off the queue."""
        for fill_id, version in dropped:
            s.execute(
                update(Fill)
                .where(Fill.id == fill_id, Fill.version == version)
                .values(needs_report=False)
                .execution_options(synchronize_session=False)
            )

    def _save_rejects(
        self, s: Session, submission_id: int | None, pending: _Pending, open_rejects: dict
    ) -> None:
        rows = []
        for fill_id, problems in pending.rejects.items():
            known = open_rejects.get(fill_id, set())
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
            s.execute(insert(RecordReject.__table__), rows)
        if pending.passed_with_old_rejects:
            s.execute(
                update(RecordReject)
                .where(
                    RecordReject.fill_id.in_(pending.passed_with_old_rejects),
                    RecordReject.resolved_at.is_(None),
                )
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
                if ph.id in busy or ph.created_at >= self.cutoff:
                    continue
                self._zero_report(group, ph, start, end)

    def _zero_report(self, group: _Group, ph: Pharmacy, start: dt.date, end: dt.date) -> None:
        with self.sessions() as s:
            name, when = self._name(group, s)
        data = asap_writer.write(
            asap_writer.zero_report(self._header(name, when), pharmacy_value(ph), start, end)
        )
        errors = [p.message for p in self.checker.file(data).problems if p.severity != WARNING]
        final = self.outbox / name
        tmp = self.outbox / (name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.outbox)
        status = FILE_FAILED if errors else ACCEPT
        with self.sessions.begin() as s:
            sub = Submission(
                file_name=name,
                submitter_id=group.submitter_id,
                extract_date=self.day,
                zero_report=True,
                fill_date_min=start,
                fill_date_max=end,
                record_count=0,
                valid_record_count=0,
                state="failed" if errors else "written",
                created_at=self.now,
                processed_at=self.now,
                collector_status=status,
                collector_answer="\n".join(errors) or None,
                last_error=errors[0] if errors else None,
                path=str(final),
            )
            s.add(sub)
            s.flush()
            self._link_pharmacies(s, sub.id, {ph.id})
        self.result.files.append(
            FileOutcome(name, group.submitter_id, 1, 0, 0, status, True, errors)
        )


def extract(
    sessions: sessionmaker[Session],
    settings: Settings,
    day: dt.date | None = None,
    *,
    now: dt.datetime | None = None,
    checker: Checker | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Extract `day` (default yesterday in the configured zone); safe to re-run."""
    now = now or utcnow()
    day = day or default_day(settings, now)
    if day >= now.astimezone(settings.extract.zone()).date() + dt.timedelta(days=1):
        raise SettingsError(f"cannot extract {day}: it has not begun")
    return Extractor(sessions, settings, day, now=now, checker=checker, progress=progress).run()


def queue_size(session: Session) -> int:
    """Fills waiting for a report (for status lines)."""
    stmt = select(func.count()).select_from(Fill).where(Fill.needs_report.is_(True))
    return session.scalar(stmt) or 0
