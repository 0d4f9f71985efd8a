"""Assembling files: which pharmacies share a file, its name, its records, zero reports.

A chain's pharmacies share their submitter's file; a store on its own gets its
own. Rows arrive from `selection` in file order and become PHA/PAT/DSP/PRE
elements without value objects (the same strings the values would give); a
record holding something no file can carry is held back alone, and the file is
then checked whole (`checking`). Per file only its bytes and compact arrays of
fill ids, versions and statuses are kept, so memory stays flat.
"""

from __future__ import annotations

import datetime as dt
import io
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cashcapture.core.pmp import fillrecord
from cashcapture.core.pmp import records as asap
from cashcapture.core.pmp.asap.codec import encode
from cashcapture.core.pmp.filenames import file_name
from cashcapture.core.pmp.fillrecord import fill_number_code, prescriber_value, text
from cashcapture.core.pmp.validate import Problem
from cashcapture.core.store.models import (
    NEW_RECORD,
    REVISED_RECORD,
    VOID_RECORD,
    Pharmacy,
    PharmacyRegistration,
)
from extract import writer as asap_writer
from extract.checking import Checker, check, uncarriable
from extract.selection import (
    DATE_FILLED,
    DSP,
    PAT,
    PRE,
    OpenRejects,
    Selection,
)
from extract.settings import WEEKDAYS, ExtractSettings, Settings

STATUS_CODES = (NEW_RECORD, REVISED_RECORD, VOID_RECORD)


# --- fill rows -> ASAP values ---------------------------------------------------------


def pharmacy_value(ph: Pharmacy) -> asap.Pharmacy:
    return asap.Pharmacy(
        dea=ph.dea,
        npi=text(ph.npi),
        ncpdp_id=text(ph.ncpdp_id),
        name=text(ph.name),
        address1=text(ph.address1),
        address2=text(ph.address2),
        city=text(ph.city),
        state=text(ph.state),
        zip=text(ph.zip),
        phone=text(ph.phone),
    )


def reporting_status(state: str, reported_status: str | None) -> str | None:
    """Fill.reporting_status over a plain row (same rule, no ORM object)."""
    held = reported_status in (NEW_RECORD, REVISED_RECORD)
    if state == "voided":
        return VOID_RECORD if held else None
    return REVISED_RECORD if held else NEW_RECORD


# --- grouping and naming ----------------------------------------------------------------


@dataclass
class Group:
    """One file's worth of pharmacies: a chain's submitter, or one store."""

    submitter_id: str
    reg_key: str
    pharmacies: list[Pharmacy]
    mail_order: bool = False  # out-of-state pharmacies' fills shipped into the run's state


def groups(pharmacies: list[Pharmacy], settings: Settings) -> list[Group]:
    """Pharmacies by submitter (theirs, else the configured one, else their DEA)."""
    by_submitter: dict[str, Group] = {}
    for ph in pharmacies:
        submitter = ph.submitter_id or settings.extract.submitter_id or ph.dea
        group = by_submitter.get(submitter)
        if group is None:
            group = by_submitter[submitter] = Group(submitter, "", [])
        group.pharmacies.append(ph)
        group.reg_key = group.reg_key or ph.reg_key or ""
    for group in by_submitter.values():
        group.reg_key = group.reg_key or settings.extract.reg_key
    return list(by_submitter.values())


def mail_order_groups(
    registered: list[tuple[Pharmacy, PharmacyRegistration]], settings: Settings
) -> list[Group]:
    """Out-of-state pharmacies by the submitter this state's registration names (else
    their DEA), with that registration's RegKey: how this state's PMP knows them."""
    by_submitter: dict[str, Group] = {}
    for ph, reg in registered:
        submitter = reg.submitter_id or ph.dea
        group = by_submitter.setdefault(submitter, Group(submitter, "", [], mail_order=True))
        group.pharmacies.append(ph)
        group.reg_key = group.reg_key or reg.reg_key or ""
    return list(by_submitter.values())


def registration_problem(group: Group, settings: Settings, when: dt.datetime) -> str:
    """Why no file can be named for this submitter ("" when it can)."""
    if not group.reg_key:
        return (
            f"submitter {group.submitter_id}: no RegKey (register one for the pharmacy "
            "or set [extract] reg_key); its fills stay queued"
        )
    try:
        ex = settings.extract
        file_name(group.submitter_id, group.reg_key, when, ex.report_state, ex.name_pattern)
    except ValueError as exc:
        return f"submitter {group.submitter_id}: {exc} for the file name; fills stay queued"
    return ""


class Names:
    """File names no other file has (the unique column is the backstop)."""

    def __init__(
        self, settings: ExtractSettings, when: dt.datetime, taken: Callable[[], set[str]]
    ) -> None:
        self.state = settings.report_state
        self.pattern = settings.name_pattern
        self.when = when.replace(microsecond=0, tzinfo=None)
        self._load = taken
        self._taken: set[str] | None = None

    def next(self, group: Group) -> tuple[str, dt.datetime]:
        if self._taken is None:
            self._taken = self._load()
        when = self.when
        while True:
            name = file_name(group.submitter_id, group.reg_key, when, self.state, self.pattern)
            if name not in self._taken:
                self._taken.add(name)
                return name, when
            when += dt.timedelta(seconds=1)  # one file per submitter per second


def zero_period(settings: Settings, day: dt.date) -> tuple[dt.date, dt.date] | None:
    """The period a zero report made for `day` covers, or None when none is due."""
    cadence = settings.extract.cadence
    if cadence == "daily":
        return day, day
    if cadence == "weekly" and day.weekday() == WEEKDAYS.index(settings.extract.week_ends):
        return day - dt.timedelta(days=6), day
    return None


# --- what a file carries ------------------------------------------------------------------


@dataclass
class Pending:
    """What a file carries, one entry per record in file order, kept compact."""

    fill_ids: array[int] = field(default_factory=lambda: array("q"))
    versions: array[int] = field(default_factory=lambda: array("q"))
    pharmacy_ids: array[int] = field(default_factory=lambda: array("q"))
    filled: array[int] = field(default_factory=lambda: array("l"))  # date ordinals
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
class Built:
    """A file made and checked, waiting for the transaction that records it."""

    group: Group
    name: str
    content: bytes | None  # None: nothing went in (all held back, or nothing queued)
    pending: Pending
    errors: list[str]
    open_rejects: OpenRejects
    zero: tuple[dt.date, dt.date] | None = None
    pharmacy_id: int | None = None  # the store a zero report is for


# --- assembling -----------------------------------------------------------------------------


class Assembler:
    """Files for groups, from the rows `selection` gives; zero reports for quiet stores."""

    def __init__(
        self, settings: Settings, selection: Selection, checker: Checker, names: Names
    ) -> None:
        self.settings = settings
        self.selection = selection
        self.checker = checker
        self.names = names
        elements = fillrecord.elements(settings.extract.version)
        self._table = elements.table
        # Rows -> PAT / DSP elements without value objects (same strings as the values give),
        # by the encoders the counter judges its claims with.
        self._pat_elements = elements.pat
        self._dsp_elements = elements.dsp
        self._partial = elements.partial_number
        self.active: set[int] = set()  # pharmacies with any fill activity this run

    def header(self, name: str, when: dt.datetime) -> asap.Header:
        control = name.removesuffix(".dat").split("_", 2)[2]
        if len(control) > 40:
            control = control[-40:]
        ex = self.settings.extract
        return asap.Header(
            control_number=control,
            created=when,
            version=ex.version,
            file_type=ex.file_type,
            source_id=ex.report_state,
        )

    def build(self, session: Session, group: Group) -> Built:
        """The group's file: every queued fill a record, or held back with its reject."""
        pending = Pending()
        buf = io.BytesIO()
        writer: asap_writer.AsapWriter | None = None
        name = ""
        sel = self.selection
        open_rejects = sel.open_rejects([p.id for p in group.pharmacies])
        prescribers: dict[tuple[Any, ...], asap.Prescriber] = {}
        pre_bad: dict[tuple[Any, ...], Problem | None] = {}
        for ph in group.pharmacies:
            pha = pharmacy_value(ph)
            pha_bad = uncarriable(encode(self._table, "PHA", pha))
            patient_key: tuple[Any, ...] | None = None
            pat: list[str] = []
            pat_bad: Problem | None = None
            rows = (
                sel.mail_order_rows(session, ph) if group.mail_order else sel.rows(session, ph.id)
            )
            for row in rows:
                fill_id, version, state, reported, compound, fill_number, partial = row[:7]
                self.active.add(ph.id)
                status = reporting_status(state, reported)
                if status is None:
                    pending.dropped.append((fill_id, version))
                    continue
                key = row[PAT]
                if key != patient_key:
                    pat, patient_key = self._pat_elements(key), key
                    pat_bad = uncarriable(pat)
                pre_key = row[PRE]
                prescriber = prescribers.get(pre_key)
                if prescriber is None:
                    if len(prescribers) > 10_000:
                        prescribers.clear()
                        pre_bad.clear()
                    prescriber = prescribers[pre_key] = prescriber_value(pre_key)
                    pre_bad[pre_key] = uncarriable(encode(self._table, "PRE", prescriber))
                ingredients = sel.ingredients(session, fill_id) if compound else ()
                product = None
                if compound:
                    product, ingredients = self.checker.compound(ingredients)
                dsp = self._dsp_elements((*row[DSP], status, fill_number_code(fill_number)))
                if partial:
                    self._partial(dsp, partial)
                if product is not None:
                    dsp[7:9] = product  # DSP07 / DSP08: the first controlled ingredient
                bad = (
                    pha_bad
                    or pat_bad
                    or pre_bad.get(pre_key)
                    or uncarriable(dsp, *(encode(self._table, "CDI", i) for i in ingredients))
                )
                if bad is not None:  # held back alone: the rest of the file still goes
                    pending.rejects.setdefault(fill_id, []).append(bad)
                    continue
                if writer is None:
                    name, when = self.names.next(group)
                    writer = asap_writer.AsapWriter(buf, self.header(name, when))
                writer.add_encoded(pha, pat, dsp, prescriber, ingredients)
                pending.add(fill_id, version, status, row[DATE_FILLED], ph.id)
        if writer is None:
            return Built(group, name, None, pending, [], open_rejects)
        writer.close()
        checked = check(self.checker, buf.getvalue())
        for index, problem in checked.rejects:
            pending.rejects.setdefault(pending.fill_ids[index], []).append(problem)
        if checked.keep is not None:
            pending.keep(checked.keep)
        return Built(group, name, checked.content, pending, checked.errors, open_rejects)

    def zero_report(self, group: Group, ph: Pharmacy, start: dt.date, end: dt.date) -> Built:
        """The pharmacy's zero report for start..end, checked like any file."""
        name, when = self.names.next(group)
        data = asap_writer.write(
            asap_writer.zero_report(self.header(name, when), pharmacy_value(ph), start, end)
        )
        return Built(
            group, name, data, Pending(), self.checker.errors(data), {}, (start, end), ph.id
        )
