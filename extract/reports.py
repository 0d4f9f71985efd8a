"""Submission status, monthly recap and held-back records, as the KY guide shows them.

Queries return plain rows (tuples of strings and numbers) with the guide's
column names; rendering (a rich table, or CSV) is separate, so one query
feeds every format. Dates are shown in the configured time zone.

Status: our validator applies the collector's rules when the file is written,
so "Processed Date" is when it processed the file, "Records" counts the fills
considered for it and "Valid Records" those that went into it; a file with a
file-level error is "File Failed" and is never sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, defer

from cashcapture.core.store.models import (
    Fill,
    Pharmacy,
    RecordReject,
    Submission,
    SubmissionRecord,
    submission_pharmacies,
)

STATUS_COLUMNS = (
    "Submitted Date",
    "Processed Date",
    "File Name",
    "File Start Date",
    "File End Date",
    "Records",
    "Valid Records",
    "Status",
    "Delivery",
)
RECAP_COLUMNS = (
    "DEANumber",
    "ProcessDate",
    "SubmissionDate",
    "RecordCount",
    "MinFillDate",
    "MaxFillDate",
    "ProcessFileName",
)
REJECT_COLUMNS = (
    "Facility ID",
    "Refill Code",
    "Rx Number",
    "Date Filled",
    "NDC Number",
    "Reject Reason",
    "Since",
)
DELIVERED = ("uploaded", "processed")


@dataclass(frozen=True)
class Report:
    title: str
    columns: Sequence[str]
    rows: list[tuple]


def _day(value: dt.datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).date().isoformat()


def _date(value: dt.date | None) -> str:
    return "" if value is None else value.isoformat()


def _bounds(first: dt.date, last: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[first 00:00, last+1 00:00) in the zone, as UTC instants."""
    start = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return start, end


def status(session: Session, first: dt.date, last: dt.date, zone: ZoneInfo) -> Report:
    """Files written from `first` to `last` (inclusive, local dates), oldest first."""
    start, end = _bounds(first, last, zone)
    stmt = (
        select(Submission)
        .options(defer(Submission.content))
        .where(Submission.created_at >= start, Submission.created_at < end)
        .order_by(Submission.created_at, Submission.id)
    )
    rows = [
        (
            _day(sub.uploaded_at, zone),
            _day(sub.processed_at, zone),
            sub.file_name,
            _date(sub.fill_date_min),
            _date(sub.fill_date_max),
            sub.record_count,
            sub.valid_record_count,
            sub.collector_status or "",
            sub.state,
        )
        for sub in session.scalars(stmt)
    ]
    return Report(f"Submission status {first} to {last}", STATUS_COLUMNS, rows)


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """'YYYY-MM' -> first and last day; ValueError with a clear message otherwise."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month must be YYYY-MM, got {month!r}") from None
    nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, nxt - dt.timedelta(days=1)


def recap(session: Session, month: str, zone: ZoneInfo) -> Report:
    """Per pharmacy, each file delivered in the month with that pharmacy's count and dates."""
    first, last = month_bounds(month)
    start, end = _bounds(first, last, zone)
    in_month = and_(
        Submission.state.in_(DELIVERED),
        Submission.uploaded_at >= start,
        Submission.uploaded_at < end,
    )
    per_pharmacy = (
        select(
            SubmissionRecord.submission_id.label("sid"),
            Fill.pharmacy_id.label("pid"),
            func.count().label("n"),
            func.min(Fill.date_of_service).label("lo"),
            func.max(Fill.date_of_service).label("hi"),
        )
        .join(Fill, Fill.id == SubmissionRecord.fill_id)
        .where(SubmissionRecord.submission_id.in_(select(Submission.id).where(in_month)))
        .group_by(SubmissionRecord.submission_id, Fill.pharmacy_id)
        .subquery()
    )
    sp = submission_pharmacies
    stmt = (
        select(
            Pharmacy.dea,
            Submission.processed_at,
            Submission.uploaded_at,
            per_pharmacy.c.n,
            per_pharmacy.c.lo,
            per_pharmacy.c.hi,
            Submission.fill_date_min,
            Submission.fill_date_max,
            Submission.file_name,
        )
        .join(sp, sp.c.submission_id == Submission.id)
        .join(Pharmacy, Pharmacy.id == sp.c.pharmacy_id)
        .outerjoin(
            per_pharmacy,
            and_(per_pharmacy.c.sid == Submission.id, per_pharmacy.c.pid == Pharmacy.id),
        )
        .where(in_month)
        .order_by(Pharmacy.dea, Submission.uploaded_at, Submission.id)
    )
    rows = [
        (
            dea,
            _day(processed, zone),
            _day(uploaded, zone),
            n or 0,
            _date(lo or file_lo),  # a zero report: the period it covers
            _date(hi or file_hi),
            name,
        )
        for dea, processed, uploaded, n, lo, hi, file_lo, file_hi, name in session.execute(stmt)
    ]
    return Report(f"KASPER submission recap {month}", RECAP_COLUMNS, rows)


def rejects(session: Session, zone: ZoneInfo, include_resolved: bool = False) -> Report:
    """Records held back, in the guide's reject table layout, plus since when."""
    stmt = (
        select(RecordReject, Fill, Pharmacy.dea)
        .join(Fill, Fill.id == RecordReject.fill_id)
        .join(Pharmacy, Pharmacy.id == Fill.pharmacy_id)
        .order_by(Pharmacy.dea, Fill.date_of_service, Fill.rx_number, RecordReject.id)
    )
    if not include_resolved:
        stmt = stmt.where(RecordReject.resolved_at.is_(None))
    rows = [
        (
            dea,
            str(fill.fill_number),
            fill.rx_number,
            fill.date_of_service.strftime("%Y%m%d"),
            fill.ndc,
            rej.message,
            _day(rej.created_at, zone) + (" (resolved)" if rej.resolved_at else ""),
        )
        for rej, fill, dea in session.execute(stmt)
    ]
    return Report("Records held back", REJECT_COLUMNS, rows)


# --- rendering ------------------------------------------------------------------------


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(report.columns)
    out.writerows(report.rows)
    return buf.getvalue()


def render(report: Report, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or logged: don't fold file names at 80 columns
            console = Console(width=240)
    if not report.rows:
        console.print(f"{report.title}: nothing found")
        return
    table = Table(title=report.title)
    for name in report.columns:
        numeric = name in ("Records", "Valid Records", "RecordCount")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in report.rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


@contextmanager
def progress(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields update(done, total)."""
    if not enabled:
        yield lambda done, total: None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
